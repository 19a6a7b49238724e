"""A lean HTTP/1.1 client for the proxy path: pooled keep-alive connections, streamed bodies.

Measured with `make bench`: aiohttp's client cost about three times what its server did per
proxied request; this one does only what a proxy to OpenAI-compatible servers needs (requests
with a body, Content-Length or chunked answers, keep-alive) on plain asyncio protocols.

Errors, all subclasses of `UpstreamError` (deliberately not OSError, so that a failure upstream
is never mistaken for the client going away):
    ConnectFailed      the TCP (or TLS) connection could not be made, or not in time
    UpstreamClosed     the connection broke or the answer was not valid HTTP/1.1

What a backend sends is checked before any of it can reach a client: the status line (HTTP/1.x,
a status of 100-599), every header line (no CR, LF or NUL inside one, a name without whitespace),
the framing (one valid Content-Length, not together with Transfer-Encoding; valid chunk sizes).
Interim answers (1xx) are skipped; 204, 304 and answers to HEAD have no body. A connection whose
answer broke any of that is closed, never reused. Reading stops while more than `_HIGH_WATER`
bytes wait unread (the body is not being taken, e.g. its client reads slowly) and resumes below
`_LOW_WATER`, so a fast backend is held back by TCP instead of by the gateway's memory.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_MAX_IDLE = 256
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024
# A backend sending interim (1xx) answers without end is broken, not slow.
_MAX_INTERIM = 32
# A chunk-size line, with extensions: longer is not a chunked body.
_MAX_CHUNK_LINE = 4096
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_NO_BODY_STATUSES = frozenset({204, 304})
_STATUSES = {str(code): code for code in range(100, 600)}  # three digits, 100-599, nothing else


class UpstreamError(Exception):
    """The backend could not be reached, or its answer broke off."""


class ConnectFailed(UpstreamError):
    """No connection to the backend (refused, unreachable, or not within the connect timeout)."""


class UpstreamClosed(UpstreamError):
    """The connection closed (or the answer stopped being HTTP) before the answer was complete."""


class _Stale(UpstreamClosed):
    """The connection closed before any byte of the answer (a kept-alive one may be retried)."""


class _Connection(asyncio.Protocol):
    """One TCP connection; bytes are buffered here and handed out by `Response`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def taken(self) -> None:
        """Bytes were taken from the buffer: read again once it is low."""
        if self.paused and len(self.buffer) < _LOW_WATER:
            self._resume()

    def _resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes; raise UpstreamClosed if none can come."""
        if self.closed:
            raise UpstreamClosed(f"connection closed by the backend ({self.error or 'EOF'})")
        if self.paused:
            self._resume()  # more is needed than the buffer holds
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """Status and headers of an upstream answer; the body is read with `read()` or `readany()`."""

    def __init__(
        self,
        pool: Pool,
        conn: _Connection,
        status: int,
        headers: dict[str, str],
        *,
        chunked: bool,
        length: int | None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self.status = status
        self.headers = headers  # names in lower case
        self._chunked = chunked
        # Bytes of body still to come; None: chunked, or delimited by the connection closing.
        self._remaining = length
        # The body's size when the head said it (Content-Length, or none at all).
        self.length = length
        self._chunk_left = 0  # bytes left in the current chunk (chunked framing)
        self._done = self._remaining == 0
        self._keep_alive = headers.get("connection", "").lower() != "close"
        if self._done:
            self._finish()

    async def readany(self) -> bytes:
        """The next bytes of the body, b"" once it is complete."""
        while not self._done:
            piece = self._take()
            if piece:
                return piece
            if self._done:
                break
            if self._remaining is None and not self._chunked and self._conn.closed:
                self._done = True  # body delimited by the connection closing
                self._keep_alive = False
                break
            await self._conn.more()
        self._finish()
        return b""

    async def read(self) -> bytes:
        parts = []
        while piece := await self.readany():
            parts.append(piece)
        return b"".join(parts)

    def _take(self) -> bytes:
        buffer = self._conn.buffer
        if not self._chunked:
            if not buffer:
                return b""
            size = len(buffer) if self._remaining is None else min(len(buffer), self._remaining)
            piece = bytes(buffer[:size])
            del buffer[:size]
            if self._conn.paused:
                self._conn.taken()
            if self._remaining is not None:
                self._remaining -= size
                self._done = self._remaining == 0
            return piece
        try:
            return self._take_chunks(buffer)
        finally:
            if self._conn.paused:
                self._conn.taken()

    def _take_chunks(self, buffer: bytearray) -> bytes:
        out = bytearray()
        while True:
            if self._chunk_left > 0:
                size = min(len(buffer), self._chunk_left)
                out += buffer[:size]
                del buffer[:size]
                self._chunk_left -= size
                if self._chunk_left > 0:
                    return bytes(out)
                self._chunk_left = -2  # the CRLF after the chunk's data
            if self._chunk_left == -2:
                if len(buffer) < 2:
                    return bytes(out)
                if buffer[:2] != b"\r\n":
                    raise UpstreamClosed("malformed chunked body")
                del buffer[:2]
                self._chunk_left = 0
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > _MAX_CHUNK_LINE:
                    raise UpstreamClosed("malformed chunk size")
                return bytes(out)
            field = bytes(buffer[:end]).split(b";", 1)[0].rstrip(b" \t")
            # 1*HEXDIG, as RFC 9112 says: int() alone would also take "0x1a", "+1a", "1_a", " 1a".
            if not field or len(field) > 15 or field.strip(_HEX_DIGITS):
                raise UpstreamClosed("malformed chunk size")
            size = int(field, 16)
            del buffer[: end + 2]
            if size == 0:
                self._done = True  # trailers are not used by these servers; the last CRLF is dropped
                trailer_end = buffer.find(b"\r\n")
                del buffer[: trailer_end + 2 if trailer_end >= 0 else len(buffer)]
                return bytes(out)
            self._chunk_left = size

    def _finish(self) -> None:
        if self._conn is not None and self._done and self._keep_alive and not self._conn.buffer:
            self._pool.release(self._conn)
            self._conn = None  # type: ignore[assignment]

    def close(self) -> None:
        """Give the connection back if the body was read to the end; otherwise drop it (cancels upstream)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]


class Pool:
    """Keep-alive connections to one backend base URL."""

    def __init__(self, base_url: str, connect_timeout: float) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host_header = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"connect timed out after {self._connect_timeout:g}s") from None
        except OSError as exc:
            raise ConnectFailed(f"connect: {exc.strerror or exc}") from None
        return conn

    def release(self, conn: _Connection) -> None:
        if conn.closed or len(self._idle) >= _MAX_IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    async def request(self, method: str, path: str, headers: str, body: bytes = b"") -> Response:
        """Send a request (headers: complete "Name: value\\r\\n" lines); wait for the answer's head."""
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n{length}{headers}\r\n"
        ).encode("latin-1")
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.buffer:
                conn.close()
                continue
            try:
                return await self._exchange(conn, head, body, method)
            except _Stale:
                continue  # the backend had closed this kept-alive connection: use another
        try:
            return await self._exchange(await self._connect(), head, body, method)
        except _Stale as exc:
            raise UpstreamClosed(str(exc)) from None

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes, method: str) -> Response:
        assert conn.transport is not None
        conn.transport.write(head + body)
        try:
            for _ in range(_MAX_INTERIM + 1):
                while (end := conn.buffer.find(b"\r\n\r\n")) < 0:
                    if len(conn.buffer) > _MAX_HEAD:
                        raise UpstreamClosed("answer head too large")
                    if conn.closed and not conn.buffer:
                        raise _Stale(
                            f"connection closed by the backend before an answer ({conn.error or 'EOF'})"
                        )
                    await conn.more()
                raw = bytes(conn.buffer[:end])
                del conn.buffer[: end + 4]
                if conn.paused:
                    conn.taken()
                status, headers = _parse_head(raw)
                if status >= 200:
                    break
                if status == 101:
                    raise UpstreamClosed("the backend switched protocols unasked (101)")
                # 100 Continue, 103 Early Hints, ...: interim, without a body; the answer follows.
            else:
                raise UpstreamClosed(f"more than {_MAX_INTERIM} interim (1xx) answers")
            chunked, length = _framing(headers)
        except UpstreamClosed:
            conn.close()
            raise
        except BaseException:
            conn.close()  # cancelled (client gone, or a timeout): the connection is in an unknown state
            raise
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            chunked, length = False, 0  # no body by definition, whatever the head says
        return Response(self, conn, status, headers, chunked=chunked, length=length)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names in lower case, repeats joined with ", ") of an answer's head.

    Raises UpstreamClosed for anything a client must not receive: a CR, LF or NUL inside a line
    (a header injected into the client's answer), a status outside 100-599, whitespace in a name
    or before its colon, obs-fold."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\0" in text:
        raise UpstreamClosed("malformed answer head: CR, LF or NUL inside a line")
    version, _, rest = lines[0].partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise UpstreamClosed(f"not an HTTP/1.x answer: {lines[0][:40]!r}")
    status = _STATUSES.get(rest[:3])
    if status is None or rest[3:4] not in ("", " "):
        raise UpstreamClosed(f"malformed status line, or a status outside 100-599: {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise UpstreamClosed(f"malformed header line: {line[:40]!r}")
        key = name.lower()
        if key in headers:
            headers[key] += ", " + value.strip(" \t")
        else:
            headers[key] = value.strip(" \t")
    names = "".join(headers)  # checked once: no empty name, no whitespace in or around one
    if " " in names or "\t" in names or "" in headers:
        raise UpstreamClosed("malformed header line: whitespace in a name, or no name")
    if version == "HTTP/1.0":
        headers.setdefault("connection", "close")
    return status, headers


def _framing(headers: dict[str, str]) -> tuple[bool, int | None]:
    """(chunked, Content-Length) of a body, per RFC 9112 §6.3; UpstreamClosed where it is ambiguous."""
    length_field = headers.get("content-length")
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if length_field is not None:
            raise UpstreamClosed("both Transfer-Encoding and Content-Length in the answer")
        # Chunked when it is the final coding; otherwise the body runs until the connection closes.
        return coding.rsplit(",", 1)[-1].strip(" \t").lower() == "chunked", None
    if length_field is None:
        return False, None
    if length_field.isdigit() and length_field.isascii() and len(length_field) <= 18:
        return False, int(length_field)
    values = {v.strip(" \t") for v in length_field.split(",")}
    value = values.pop()
    if values or not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        raise UpstreamClosed(f"invalid Content-Length in the answer: {length_field[:40]!r}")
    return False, int(value)
