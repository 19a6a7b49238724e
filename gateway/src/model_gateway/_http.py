"""A small HTTP/1.1 server on asyncio protocols and llhttp (`httptools`): what the gateway needs.

Measured with `make bench` (see README): aiohttp's server cost about 60 us of CPU a request on
its own, uvicorn's about 36 us; this one does only what a JSON-and-SSE proxy needs.

    * requests are parsed by llhttp; a request that is not valid HTTP/1.x (CR/LF in a header,
      bad bytes, a conflicting Content-Length) is answered 400 and the connection closed; so are
      CONNECT and an upgrade asked with a body (llhttp would skip the body); any other upgrade
      request is answered over HTTP/1.1, then the connection closed;
    * the head is limited (`max_head_bytes`, 431, also while one endless line arrives; and
      `max_headers` lines) and so is the body (`max_body_bytes`, 413, checked against
      Content-Length before any body byte is read, and again while a chunked body arrives, which
      is gathered in one buffer however small its chunks);
    * `head_check`, given by the application, sees each request that announces a body once its
      head is read: an answer from it (a 401, say) is sent without reading the body;
    * such an error answer comes after the answers to the requests before it on the connection;
      then the server stops writing but reads and drops what the client still sends for a moment
      before closing, so that a client busy sending its body reads the answer instead of a reset;
    * the whole body is read before the handler runs (every endpoint here needs all of it);
    * `Expect: 100-continue` is honoured (once the answers before that request are written);
      keep-alive per HTTP/1.1 and HTTP/1.0 (`Connection: keep-alive`) and pipelining (one request
      at a time per connection; at most `max_pipelined` requests are read ahead of it, then
      reading pauses; a client that closes meanwhile is noticed from the socket's TCP state, by
      the sweep and before a queued request starts, and its work cancelled);
    * a handler answers with a `Response` (no body on the wire for HEAD), or streams one
      (`Request.start_stream`: with the Content-Length given, else chunked transfer encoding for
      HTTP/1.1 and until close for HTTP/1.0, with the transport's flow control); an exception
      before answering is a 500 (the connection stays open: the request was read whole), one
      after the stream started closes the connection without the terminating chunk;
    * the client going away cancels the handler's task; so does a client that takes nothing of
      its answer for `send_timeout` while the transport's buffer is full (it is disconnected);
    * a sweep once a second closes idle keep-alive connections and heads or bodies that arrive
      too slowly (408), disconnects clients that stopped reading, and refreshes the Date header
      (no timer per request);
    * `close()` stops accepting, closes idle connections, lets running requests finish within a
      grace period, then cancels what is left and waits for it to unwind.

Error bodies for the server's own answers come from `error_body(status, message, code)`, given by
the application, so that they have the application's shape.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus

import httptools

log = logging.getLogger("model_gateway.http")

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_SWEEP_INTERVAL_S = 1.0
_NO_BODY_STATUSES = frozenset({204, 304})
_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of Linux's struct tcp_info
# After an error answer that ends the connection: how long to read and drop what the client still
# sends before closing. Closing with unread bytes makes the kernel send a reset, which can destroy
# the answer before the client reads it (what nginx's lingering_close is for).
_LINGER_S = 2.0
# `close()`: how long to wait for the handlers it cancelled to unwind.
_CANCELLED_WAIT_S = 1.0


class ClientGone(ConnectionError):
    """The client's connection closed while its answer was being written."""


class Response:
    """A whole answer: status, headers (without Content-Length, which is computed) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}


class Request:
    """One parsed request. `headers` has lower-case names; repeated headers are joined with ", "."""

    __slots__ = ("_conn", "body", "head_checked", "headers", "http11", "method", "path", "query", "stream")

    def __init__(
        self,
        conn: _Connection,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        http11: bool,
    ) -> None:
        self._conn = conn
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.http11 = http11
        self.body = b""
        self.stream: ResponseStream | None = None
        self.head_checked = False  # the server's head_check passed it

    def start_stream(self, status: int, headers: dict[str, str], length: int | None = None) -> ResponseStream:
        """Send the head of a streamed answer; the body (`length` bytes, when given) follows with
        `write()` and `end()`."""
        self.stream = ResponseStream(self._conn, status, headers, length)
        return self.stream


class ResponseStream:
    """A streamed answer's body: of a given length, else chunked (HTTP/1.0 clients: until close)."""

    __slots__ = ("_chunked", "_conn", "ended")

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str], length: int | None) -> None:
        self._conn = conn
        self._chunked = length is None and conn.http11
        self.ended = False
        if length is not None:
            framing = f"Content-Length: {length}\r\n"
        elif self._chunked:
            framing = "Transfer-Encoding: chunked\r\n"
        else:
            framing = ""
            conn.keep_alive = False
        conn.write(conn.head(status, headers, framing))

    async def write(self, data: bytes) -> None:
        """Send one piece; waits while the client reads slower than we write. Raises ClientGone."""
        conn = self._conn
        if self._chunked:
            conn.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            conn.write(data)
        if conn.write_paused:
            await conn.drain()

    def end(self) -> None:
        """Finish the answer (the terminating chunk); the connection may then serve the next request.

        Once the client has gone there is nothing left to finish: then this does nothing."""
        if not self.ended:
            self.ended = True
            if self._chunked and not self._conn.closed:
                self._conn.write(b"0\r\n\r\n")


Handler = Callable[[Request], Awaitable[Response | None]]
# Sees a request with a body once its head is read; an answer it gives is sent instead of reading it.
HeadCheck = Callable[[Request], Response | None]
ErrorBody = Callable[[int, str, str], bytes]


class _Connection(asyncio.Protocol):
    """One client connection: parsing, the request queue, writing answers, flow control."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # The request being received.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0  # the target and the headers llhttp has handed over
        self._partial_line = 0  # the head's line still arriving (llhttp holds it back until it ends)
        self._tail_in_head = False  # whether the data being fed ends inside the head it began with
        self._in_head = False
        self._header_count = 0
        # The body: its first piece as received, then (if more come) all of it in one buffer.
        self._body: bytes | bytearray = b""
        self._body_size = 0
        self._receiving = False
        self._received_since = 0.0
        self._request: Request | None = None
        self._continue_pending = False  # a 100 Continue owed once the answers before it are written
        # An error answer for a request that could not be read, owed after the answers before it.
        self._rejection: Response | None = None
        # Requests received and not answered yet; the first one is being handled.
        self._queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.http11 = True  # of the request being answered
        self.keep_alive = True
        self.write_paused = False
        self._reading_paused = False
        self._paused_since = 0.0
        self._drain_waiter: asyncio.Future[None] | None = None
        self.closed = False  # no more HTTP on this connection (its socket may still linger)
        self._linger_until = 0.0
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.idle_since = self._loop.time()
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self._rejection is not None:
            return  # lingering, or waiting to answer a request that could not be read: drop it
        # The bytes after the data's last line break are the head's unfinished line only if nothing
        # but the head came before them: the data starts in the head or between requests, and no
        # request ends inside it (`on_message_complete` clears this).
        self._tail_in_head = self._in_head or not self._receiving
        try:
            self._parser.feed_data(data)
            if self._in_head and self._tail_in_head:
                self._measure_partial_line(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_asked()
        except (httptools.HttpParserError, _Rejected) as exc:
            if self.closed or self._rejection is not None:
                return  # a callback rejected the request already
            log.warning("malformed HTTP request", extra={"error": type(exc).__name__, "status": 400})
            self._reject(400, "The request is not valid HTTP", "bad_http")

    def _measure_partial_line(self, data: bytes) -> None:
        """llhttp holds a header back until its line ends, so a never-ending one is measured here.

        Where a request began inside `data` after other bytes the line is not measured until the
        next read: the limit may be passed by up to one read's worth."""
        newline = data.rfind(b"\n")
        self._partial_line = len(data) - newline - 1 if newline >= 0 else self._partial_line + len(data)
        self._grow_head(0)

    def _upgrade_asked(self) -> None:
        """llhttp stops after a request asking for another protocol (one without a body: see
        `_refuse_tunnels`): answer it over HTTP/1.1, then close."""
        request, _ = self._queue[-1]
        self._queue[-1] = (request, False)
        if len(self._queue) == 1:
            self.keep_alive = False
        self.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: stop working for it
        self._queue.clear()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ClientGone("the client closed the connection"))

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def peer_closed(self) -> bool:
        """Whether the client closed (or reset) its side, read from the TCP state without reading
        the socket: while reading is paused, its EOF is not seen otherwise."""
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)  # type: ignore[union-attr]
        except (AttributeError, OSError):
            return False  # not TCP on Linux: only reading can tell
        return info[0] != _TCP_ESTABLISHED

    def pause_writing(self) -> None:
        self.write_paused = True
        self._paused_since = self._loop.time()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- llhttp callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._partial_line = 0
        self._in_head = True
        self._header_count = 0
        self._body = b""
        self._body_size = 0
        self._receiving = True
        self._received_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url  # counted with the headers once the request line is complete
        if len(self._url) > self._server.max_head_bytes:
            self._stop(431, "The request head is too large", "head_too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers:
            self._head_bytes = len(self._url)
        self._partial_line = 0  # the line that was arriving is this one
        self._grow_head(len(name) + len(value))
        self._header_count += 1
        if self._header_count > self._server.max_headers:
            self._stop(431, "The request has too many header lines", "too_many_headers")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def _grow_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes + self._partial_line > self._server.max_head_bytes:
            self._stop(431, "The request head is too large", "head_too_large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        method = parser.get_method()
        headers = self._headers
        if parser.should_upgrade():
            self._refuse_tunnels(method, headers)
        http11 = parser.get_http_version() == "1.1"
        url = self._url
        if not url.startswith(b"/"):  # absolute form, or "*"
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._stop(400, "The request target is not a valid URL", "bad_http")
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.decode("latin-1").partition("?")
        self._request = Request(self, method.decode("ascii"), path, query, headers, http11)
        length = headers.get("content-length")
        limit = self._server.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self._stop(413, f"The request body is over the limit of {limit} bytes", "body_too_large")
        check = self._server.head_check
        if check is not None and (length not in (None, "0") or "transfer-encoding" in headers):
            refusal = check(self._request)
            if refusal is not None:
                self._reject_with(refusal)
                raise _Rejected
            self._request.head_checked = True
        if headers.get("expect", "").lower() == "100-continue" and http11:
            if self._task is None:
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:
                self._continue_pending = True  # not into the middle of the answer being written

    def _refuse_tunnels(self, method: bytes, headers: dict[str, str]) -> None:
        """Refuse CONNECT, and an upgrade asked with a body: httptools has llhttp skip that body as
        if it were the new protocol's, so the handler would get the request without it. Other
        upgrade requests are answered over HTTP/1.1 (`_upgrade_asked`)."""
        if method == b"CONNECT":
            self._stop(400, "CONNECT is not supported", "unsupported_upgrade")
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            message = "Protocol upgrades are not supported; send the request without Upgrade"
            self._stop(400, message, "unsupported_upgrade")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._server.max_body_bytes:
            limit = self._server.max_body_bytes
            self._stop(413, f"The request body is over the limit of {limit} bytes", "body_too_large")
        if not self._body:
            self._body = body  # most bodies arrive in one piece: no copy
        elif isinstance(self._body, bytes):
            self._body = bytearray(self._body) + body
        else:
            self._body += body

    def on_message_complete(self) -> None:
        request = self._request
        assert request is not None
        self._request = None
        self._receiving = False
        self._continue_pending = False  # the body came without it
        self._tail_in_head = False
        body = self._body
        request.body = body if isinstance(body, bytes) else bytes(body)
        self._body = b""
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._task is None:
            self._start_next()
        elif len(self._queue) > self._server.max_pipelined:
            self.pause_reading()  # read no further ahead of the answers

    # -- handling ----------------------------------------------------------------------------------
    def _start_next(self) -> None:
        request, keep_alive = self._queue[0]
        self.http11 = request.http11
        self.keep_alive = keep_alive and not self._server.closing
        self._task = self._loop.create_task(self._handle(request))

    async def _handle(self, request: Request) -> None:
        try:
            response = await self._server.handler(request)
        except asyncio.CancelledError:
            if self.closed:
                return  # the client went away
            raise
        except Exception:
            log.exception("unhandled error")
            if request.stream is None:
                response = self.error_response(500, "Internal error", "internal_error")
            else:
                self.keep_alive = False
                response = None
        if request.stream is None:
            if response is None:
                response = self.error_response(500, "Internal error", "internal_error")
            self._respond(response, request.method == "HEAD")
        elif not request.stream.ended:
            self.keep_alive = False  # the answer is incomplete: only closing says so
        self._finished()

    def _respond(self, response: Response, head_only: bool = False) -> None:
        if self.closed:
            return  # the client went away while the answer was being made
        body = response.body
        if response.status in _NO_BODY_STATUSES:
            self.write(self.head(response.status, response.headers, ""))  # no body, no length (RFC 9110)
            return
        head = self.head(response.status, response.headers, f"Content-Length: {len(body)}\r\n")
        self.write(head if head_only else head + body)

    def _finished(self) -> None:
        self._task = None
        if self.closed:
            return
        self._queue.popleft()
        if not self.keep_alive:
            self.close()
            return
        self.idle_since = self._loop.time()
        if self._queue:
            if self._reading_paused and self.peer_closed():
                self.abort()  # the client left while its next requests waited: send none of them
                return
            self._start_next()
        elif self._rejection is not None:
            self._send_rejection()
            return
        elif self._continue_pending:
            self._continue_pending = False
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # Read on unless enough is queued, or the last request read ends the connection.
        queue = self._queue
        room = len(queue) <= self._server.max_pipelined
        if self._reading_paused and self._rejection is None and room and (not queue or queue[-1][1]):
            self.resume_reading()

    # -- writing -----------------------------------------------------------------------------------
    def head(self, status: int, headers: dict[str, str], framing: str) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if not self.keep_alive:
            connection = "Connection: close\r\n"
        elif not self.http11:  # HTTP/1.0 closes unless told otherwise
            connection = "Connection: keep-alive\r\n"
        else:
            connection = ""
        return (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n{self._server.date_line}"
            f"{lines}{framing}{connection}\r\n"
        ).encode("latin-1")

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise ClientGone("the client closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ClientGone("the client closed the connection")
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def error_response(self, status: int, message: str, code: str) -> Response:
        body = self._server.error_body(status, message, code)
        return Response(status, body, {"Content-Type": "application/json"})

    def _reject(self, status: int, message: str, code: str) -> None:
        """Answer the request being received with an error, after the answers to the requests
        before it, and close: after a request that could not be read the stream cannot be resynced."""
        if self.closed or self._rejection is not None:
            return
        self._reject_with(self.error_response(status, message, code))

    def _reject_with(self, response: Response) -> None:
        self._receiving = False
        self._in_head = False
        self._rejection = response
        self._body = b""
        if self._task is None:
            self._send_rejection()
        else:
            self.pause_reading()  # nothing more is read until its turn

    def _send_rejection(self) -> None:
        assert self._rejection is not None
        self.keep_alive = False
        self.http11 = True
        self._respond(self._rejection)
        self._linger()

    def _stop(self, status: int, message: str, code: str) -> None:
        """`_reject` from inside a parser callback: the exception stops llhttp."""
        self._reject(status, message, code)
        raise _Rejected

    def _linger(self) -> None:
        """Stop writing (FIN once the answer is out), drop what still arrives; the sweep closes."""
        self.closed = True
        transport = self.transport
        if transport is None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.resume_reading()
        self._linger_until = self._loop.time() + _LINGER_S

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> asyncio.Task[None] | None:
        """Close now, cancelling the request being handled; returns its task, if any."""
        self.close()
        task = self._task
        if task is not None:
            task.cancel()
        return task

    # -- the sweep ---------------------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        """Close the connection if it sat idle, received a request too slowly, lingered enough, or
        if its client stopped reading."""
        server = self._server
        if self.write_paused and now - self._paused_since > server.send_timeout:
            # Nothing of the answer was taken for that long: drop it, with what is still buffered
            # (a plain close would wait for the buffer to drain, for ever); the handler is cancelled.
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        elif self.closed:
            if now > self._linger_until:
                self.close()
        elif self._reading_paused and self._task is not None and self.peer_closed():
            self.abort()  # gone while requests were queued: cancel the work for it
        elif self._receiving:
            if now - self._received_since > server.receive_timeout and self._task is None:
                self._reject(408, "The request was not received in time", "request_timeout")
        elif self._task is None and not self._queue and now - self.idle_since > server.keep_alive_timeout:
            self.close()

    @property
    def busy(self) -> bool:
        return self._task is not None or self._receiving


class _Rejected(Exception):
    """Raised out of a parser callback after the connection was answered and closed."""


class Server:
    """Listens on host:port and serves `handler`; `close()` shuts it down gracefully."""

    def __init__(
        self,
        handler: Handler,
        error_body: ErrorBody,
        *,
        max_body_bytes: int,
        max_head_bytes: int = 64 * 1024,
        max_headers: int = 100,
        max_pipelined: int = 1,
        head_check: HeadCheck | None = None,
        keep_alive_timeout: float = 75.0,
        receive_timeout: float = 60.0,
        send_timeout: float = 60.0,
    ) -> None:
        self.handler = handler
        self.error_body = error_body
        self.max_body_bytes = max_body_bytes
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_pipelined = max_pipelined
        self.head_check = head_check
        self.keep_alive_timeout = keep_alive_timeout
        self.receive_timeout = receive_timeout
        self.send_timeout = send_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.closing = False
        self.date_line = ""
        self._refresh_date()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog, reuse_address=True
        )
        self._sweeper = self.loop.create_task(self._sweep())

    @property
    def ports(self) -> list[int]:
        assert self._server is not None
        return [s.getsockname()[1] for s in self._server.sockets]

    def _refresh_date(self) -> None:
        self.date_line = f"Date: {formatdate(time.time(), usegmt=True)}\r\n"

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            self._refresh_date()
            now = self.loop.time()
            for conn in list(self.connections):
                conn.sweep(now)

    async def close(self, grace: float) -> None:
        """Stop accepting; let running requests finish for up to `grace` seconds; cancel the rest."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.busy:
                conn.keep_alive = False  # closes after its answer
            else:
                conn.close()
        deadline = self.loop.time() + grace
        while any(c.busy for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        cancelled = [task for conn in list(self.connections) if (task := conn.abort()) is not None]
        if cancelled:  # let them unwind (their `finally`s) before the caller tears down what they use
            await asyncio.wait(cancelled, timeout=_CANCELLED_WAIT_S)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()
