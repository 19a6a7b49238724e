"""Memory stays bounded whatever a client or a backend does: each test drives the real gateway
process with the hostile pattern and asserts a bound on its resident memory.

`growth` is the peak resident set (VmHWM) after the scenario minus the resident set (VmRSS) just
before it: what the scenario made the gateway hold at its worst, kernel socket buffers excluded.
The bounds leave room for the allocator and the interpreter; without the fixes each scenario
grows the gateway by several times its bound (figures in the comments, measured on `main`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from pathlib import Path

import pytest
import requests
from utils import API_KEY, HTTP_TIMEOUT, backend, wait_for

MB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


class Memory:
    """The gateway's resident set just before a scenario, and its peak growth since."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = _status(pid, "VmRSS")

    def growth(self) -> int:
        return _status(self.pid, "VmHWM") - self.before


def _chat_request(body: bytes, *, key: bool = True, chunked: bool = False) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    if key:
        head += b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _chat_body(content_bytes: int = 2, stream: bool = False) -> bytes:
    return json.dumps(
        {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "x" * content_bytes}]}
    ).encode()


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client killed mid-send does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def gateway(start_gateway, upstream):
    gw = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_ACCESS_LOG="false")
    assert gw.chat().status_code == 200  # warm: pools, metric children, code paths
    gw.upstream = upstream
    return gw


def test_client_that_stops_reading_a_stream_holds_the_backend_back_not_the_gateway(gateway):
    # 40 MB of SSE as fast as the backend can write it; on main the gateway read it all: +37 MB (here +1 MB).
    gateway.upstream.set("ok", chunks=400, chunk_bytes=100_000)
    memory = Memory(gateway.proc.pid)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", gateway.port))
        sock.sendall(_chat_request(_chat_body(stream=True)))
        time.sleep(4)  # reads nothing
        growth = memory.growth()
    print(f"RSS growth with a stalled reader: {growth / MB:.1f} MB")
    assert growth < 12 * MB


def test_non_streamed_answer_of_40_mb_passes_through_in_bounded_memory(gateway):
    # On main the answer was buffered whole (and joined, and copied): +89 MB (here +3 MB).
    gateway.upstream.set("ok", answer_bytes=40_000_000)
    memory = Memory(gateway.proc.pid)
    response = gateway.chat()
    growth = memory.growth()
    print(f"RSS growth passing a 40 MB answer: {growth / MB:.1f} MB")
    assert response.status_code == 200
    assert len(response.json()["choices"][0]["message"]["content"]) == 40_000_000
    assert growth < 12 * MB


def test_request_with_a_body_and_without_a_key_is_answered_401_before_its_body_is_sent(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=3) as sock:
        sock.sendall(_chat_request(b"", key=False, chunked=True))  # the head only
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_body_in_one_byte_chunks_is_held_in_bounded_memory(gateway):
    # 1 MB of body as 1,000,000 chunks; on main one object per chunk: +85 MB (here +3 MB).
    body = _chat_body(content_bytes=1_000_000)
    chunks = b"".join(b"1\r\n%c\r\n" % byte for byte in body) + b"0\r\n\r\n"
    memory = Memory(gateway.proc.pid)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(_chat_request(b"", chunked=True) + chunks)
        answer = sock.recv(65536)
    growth = memory.growth()
    print(f"RSS growth for a 1 MB body in 1-byte chunks: {growth / MB:.1f} MB")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert growth < 12 * MB


def test_pipelined_bodies_are_read_at_most_one_request_ahead(gateway):
    # 16 pipelined requests of 3.5 MB behind one the backend holds; on main +58 MB (here +14 MB).
    gateway.upstream.set("stall", seconds=20)
    request = _chat_request(_chat_body(content_bytes=3_500_000))
    memory = Memory(gateway.proc.pid)
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.settimeout(2)
    with contextlib.suppress(TimeoutError):  # the gateway stopped reading: the rest stays with the client
        sock.sendall(request * 16)
    growth = memory.growth()
    _reset(sock)
    gateway.upstream.kill()  # its held request would make a graceful stop wait
    print(f"RSS growth with 16 pipelined 3.5 MB requests: {growth / MB:.1f} MB")
    assert growth < 24 * MB


def test_client_closing_while_requests_are_queued_cancels_the_upstream_work_and_sends_none_of_them(
    gateway,
):
    gateway.upstream.set("stall", seconds=20)
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(_chat_request(_chat_body()) * 20)  # one goes upstream, the others wait
        wait_for(lambda: len(gateway.upstream.received()) == 1)
    # Closed (FIN) while the gateway was not reading: noticed from the TCP state within a sweep.
    wait_for(lambda: gateway.health()["backends"][0]["in_flight"] == 0, seconds=4)
    time.sleep(0.5)
    assert len(gateway.upstream.received()) == 1
    assert requests.get(gateway.url + "/health", timeout=HTTP_TIMEOUT).status_code == 200
    gateway.upstream.kill()  # its cancelled handler sleeps on: a graceful stop would wait for it
