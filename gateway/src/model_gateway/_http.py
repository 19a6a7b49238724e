"""A small HTTP/1.1 server on asyncio protocols and llhttp (`httptools`): what the gateway needs.

Measured with `make bench` (see README): aiohttp's server cost about 60 us of CPU a request on
its own, uvicorn's about 36 us; this one does only what a JSON-and-SSE proxy needs.

    * requests are parsed by llhttp; a request that is not valid HTTP/1.x (CR/LF in a header,
      bad bytes, a conflicting Content-Length) is answered 400 and the connection closed;
    * the head is limited (`max_head_bytes`, 431) and so is the body (`max_body_bytes`, 413, checked
      against Content-Length before any body byte is read, and again while a chunked body arrives);
    * the whole body is read before the handler runs (every endpoint here needs all of it);
    * `Expect: 100-continue` is honoured; keep-alive and pipelining per HTTP/1.1 (one request at a
      time per connection, the next ones queued);
    * a handler answers with a `Response`, or streams one (`Request.start_stream`, chunked
      transfer encoding, with the transport's flow control);
    * the client going away cancels the handler's task;
    * a sweep once a second closes idle keep-alive connections and heads or bodies that arrive
      too slowly, and refreshes the Date header (no timer per request);
    * `close()` stops accepting, closes idle connections, lets running requests finish within a
      grace period, then cancels what is left.

Error bodies for the server's own answers come from `error_body(status, message, code)`, given by
the application, so that they have the application's shape.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus

import httptools

log = logging.getLogger("model_gateway.http")

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_SWEEP_INTERVAL_S = 1.0
_MAX_QUEUED = 16  # pipelined requests waiting on one connection before reading pauses


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

    __slots__ = ("_conn", "body", "headers", "method", "path", "query", "stream")

    def __init__(
        self, conn: _Connection, method: str, path: str, query: str, headers: dict[str, str]
    ) -> None:
        self._conn = conn
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = b""
        self.stream: ResponseStream | None = None

    def start_stream(self, status: int, headers: dict[str, str]) -> ResponseStream:
        """Send the head of a streamed answer; the body follows with `write()` and `end()`."""
        self.stream = ResponseStream(self._conn, status, headers)
        return self.stream


class ResponseStream:
    """A streamed answer's body (chunked transfer encoding; for HTTP/1.0 clients, until close)."""

    __slots__ = ("_chunked", "_conn", "ended")

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str]) -> None:
        self._conn = conn
        self._chunked = conn.http11
        self.ended = False
        if not self._chunked:
            conn.keep_alive = False
        framing = "Transfer-Encoding: chunked\r\n" if self._chunked else ""
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
        """Finish the answer (the terminating chunk); the connection may then serve the next request."""
        if not self.ended:
            self.ended = True
            if self._chunked:
                self._conn.write(b"0\r\n\r\n")


Handler = Callable[[Request], Awaitable[Response | None]]
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
        self._head_bytes = 0
        self._in_head = False
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._receiving = False
        self._received_since = 0.0
        self._request: Request | None = None
        # Requests received and not answered yet; the first one is being handled.
        self._queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.http11 = True
        self.keep_alive = True
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.idle_since = self._loop.time()
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._parser.feed_data(data)
            if self._in_head:
                # The head is still incomplete after all of `data`: llhttp buffers a header until it
                # ends, so a never-ending one is stopped here rather than in `on_header`.
                self._grow_head(len(data))
        except httptools.HttpParserUpgrade:
            self._upgrade_asked()
        except (httptools.HttpParserError, _Rejected) as exc:
            if self.closed:
                return  # a callback answered and closed already
            log.warning("malformed HTTP request", extra={"error": type(exc).__name__, "status": 400})
            self._reject(400, "The request is not valid HTTP", "bad_http")

    def _upgrade_asked(self) -> None:
        """llhttp stops at a request asking for another protocol: answer it over HTTP/1.1, then close."""
        if not self._queue:  # CONNECT, or an upgrade with a body still to come
            self._reject(400, "Protocol upgrades are not supported", "unsupported_upgrade")
            return
        request, _ = self._queue[-1]
        self._queue[-1] = (request, False)
        if len(self._queue) == 1:
            self.keep_alive = False
        if self.transport is not None:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: stop working for it
        self._queue.clear()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ClientGone("the client closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- llhttp callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._in_head = True
        self._body_parts = []
        self._body_size = 0
        self._receiving = True
        self._received_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def _grow_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._server.max_head_bytes:
            self._stop(431, "The request head is too large", "head_too_large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        self.http11 = parser.get_http_version() == "1.1"
        url = self._url
        if not url.startswith(b"/"):  # absolute form, or "*"
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._stop(400, "The request target is not a valid URL", "bad_http")
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.decode("latin-1").partition("?")
        self._request = Request(self, parser.get_method().decode("ascii"), path, query, self._headers)
        length = self._headers.get("content-length")
        limit = self._server.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            self._stop(413, f"The request body is over the limit of {limit} bytes", "body_too_large")
        if self._headers.get("expect", "").lower() == "100-continue" and self.http11:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._server.max_body_bytes:
            limit = self._server.max_body_bytes
            self._stop(413, f"The request body is over the limit of {limit} bytes", "body_too_large")
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        assert request is not None
        self._request = None
        self._receiving = False
        parts = self._body_parts
        request.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._task is None:
            self._start_next()
        elif len(self._queue) > _MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()

    # -- handling ----------------------------------------------------------------------------------
    def _start_next(self) -> None:
        request, keep_alive = self._queue[0]
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
            self._respond(response)
        elif not request.stream.ended:
            self.keep_alive = False  # the answer is incomplete: only closing says so
        self._finished()

    def _respond(self, response: Response) -> None:
        body = response.body
        self.write(self.head(response.status, response.headers, f"Content-Length: {len(body)}\r\n") + body)

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
            self._start_next()
        elif self.transport is not None:
            self.transport.resume_reading()

    # -- writing -----------------------------------------------------------------------------------
    def head(self, status: int, headers: dict[str, str], framing: str) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        connection = "" if self.keep_alive else "Connection: close\r\n"
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
        """Answer the request being received with an error and close: the stream cannot be resynced."""
        if self._task is None and not self.closed:
            self.keep_alive = False
            self._respond(self.error_response(status, message, code))
        self.close()

    def _stop(self, status: int, message: str, code: str) -> None:
        """`_reject` from inside a parser callback: the exception stops llhttp."""
        self._reject(status, message, code)
        raise _Rejected

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Close now, cancelling the request being handled."""
        self.close()
        if self._task is not None:
            self._task.cancel()

    # -- the sweep ---------------------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        """Close the connection if it sat idle or received a request too slowly."""
        server = self._server
        if self._receiving:
            if now - self._received_since > server.receive_timeout and self._task is None:
                self._receiving = False
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
        keep_alive_timeout: float = 75.0,
        receive_timeout: float = 60.0,
    ) -> None:
        self.handler = handler
        self.error_body = error_body
        self.max_body_bytes = max_body_bytes
        self.max_head_bytes = max_head_bytes
        self.keep_alive_timeout = keep_alive_timeout
        self.receive_timeout = receive_timeout
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
        """Stop accepting; let running requests finish for up to `grace` seconds; close the rest."""
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
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()
