"""A lean HTTP/1.1 client for the proxy path: pooled keep-alive connections, streamed bodies.

Measured with `make bench`: aiohttp's client cost about three times what its server did per
proxied request; this one does only what a proxy to OpenAI-compatible servers needs (requests
with a body, Content-Length or chunked answers, keep-alive) on plain asyncio protocols.

Errors, all subclasses of `UpstreamError` (deliberately not OSError, so that a failure upstream
is never mistaken for the client going away):
    ConnectFailed      the TCP (or TLS) connection could not be made, or not in time
    UpstreamClosed     the connection broke or the answer was not valid HTTP/1.1
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_MAX_IDLE = 256


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

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

    def __init__(self, pool: Pool, conn: _Connection, status: int, headers: dict[str, str]) -> None:
        self._pool = pool
        self._conn = conn
        self.status = status
        self.headers = headers  # names in lower case
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else None
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
            if self._remaining is not None:
                self._remaining -= size
                self._done = self._remaining == 0
            return piece
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
                return bytes(out)
            try:
                size = int(bytes(buffer[:end]).split(b";", 1)[0], 16)
            except ValueError:
                raise UpstreamClosed("malformed chunk size") from None
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
                return await self._exchange(conn, head, body)
            except _Stale:
                continue  # the backend had closed this kept-alive connection: use another
        try:
            return await self._exchange(await self._connect(), head, body)
        except _Stale as exc:
            raise UpstreamClosed(str(exc)) from None

    async def _exchange(self, conn: _Connection, head: bytes, body: bytes) -> Response:
        assert conn.transport is not None
        conn.transport.write(head + body)
        try:
            while (end := conn.buffer.find(b"\r\n\r\n")) < 0:
                if len(conn.buffer) > _MAX_HEAD:
                    raise UpstreamClosed("answer head too large")
                if conn.closed and not conn.buffer:
                    raise _Stale(f"connection closed by the backend before an answer ({conn.error or 'EOF'})")
                await conn.more()
            lines = bytes(conn.buffer[:end]).decode("latin-1").split("\r\n")
            del conn.buffer[: end + 4]
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise UpstreamClosed(f"not an HTTP/1.x answer: {lines[0][:40]!r}")
            status = int(rest[:3])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except (UpstreamClosed, ValueError) as exc:
            conn.close()
            raise (
                exc if isinstance(exc, UpstreamClosed) else UpstreamClosed("malformed answer head")
            ) from None
        except BaseException:
            conn.close()  # cancelled (client gone, or a timeout): the connection is in an unknown state
            raise
        if version == "HTTP/1.0":
            headers.setdefault("connection", "close")
        return Response(self, conn, status, headers)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
