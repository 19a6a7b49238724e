"""A backend that answers with bytes given by the test, exactly as given: for broken answers that no
HTTP server library would produce (interim answers, bad lengths, bare LF, odd status lines).

It runs in a thread of the test process on 127.0.0.1. Each request (its head, then a body of its
Content-Length) is answered with the next of `answers` (the last one repeats); the connection then
stays open for the next request, as a keep-alive server's does, unless the answer is a `Close`.
It records the requests, and how many of its connections the other side closed.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Close:
    """An answer after which the backend closes the connection (a close-delimited body ends)."""

    data: bytes


@dataclass
class RawUpstream:
    answers: list[bytes | Close]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed_by_peer: int = 0
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> RawUpstream:
        self._sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def set(self, *answers: bytes | Close) -> None:
        """Answer the next requests with `answers`; forget what was seen so far."""
        with self._lock:
            self.answers = list(answers)
            self.requests.clear()
            self.connections = 0
            self.closed_by_peer = 0

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _next_answer(self, request: bytes) -> bytes | Close:
        with self._lock:
            self.requests.append(request)
            return self.answers[min(len(self.requests), len(self.answers)) - 1]

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = self._recv(conn)
                    if not data:
                        with self._lock:
                            self.closed_by_peer += 1
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = self._recv(conn)
                    if not data:
                        return
                    buffer += data
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                answer = self._next_answer(request)
                try:
                    conn.sendall(answer.data if isinstance(answer, Close) else answer)
                except OSError:
                    return
                if isinstance(answer, Close):
                    return

    @staticmethod
    def _recv(conn: socket.socket) -> bytes:
        try:
            return conn.recv(65536)
        except OSError:
            return b""
