"""The gateway's own HTTP/1.1 server (`model_gateway._http`), in process, byte by byte.

Each test runs a `Server` with a small handler of its own on 127.0.0.1 inside `uvloop.run`
(the loop the gateway runs on) and talks to it over a raw asyncio stream, so what is asserted is
exactly what went over the wire. Timeouts are passed short; the server's sweep runs once a
second, so a test that waits for it waits 1-2 s. Every test also fails if an exception reached
the event loop unhandled (a task that died, a callback that raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import uvloop
from model_gateway._http import ClientGone, Request, Response, Server

MAX_BODY = 1000
MAX_HEAD = 2000
SCENARIO_TIMEOUT_S = 15
# How long a test waits for something that should happen at once (an answer, a close).
PROMPT_S = 3.0
# A wait for the sweep (every 1 s) to act on a 0.5 s timeout: 0.5 s + one sweep period + slack.
SWEEP_WAIT_S = 2.5


def error_body(status: int, message: str, code: str) -> bytes:
    return json.dumps({"error": {"status": status, "message": message, "code": code}}).encode()


async def echo(request: Request) -> Response:
    """Says what it received, as JSON."""
    seen = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body": request.body.decode("latin-1"),
    }
    return Response(200, json.dumps(seen).encode(), {"Content-Type": "application/json"})


class RecordingEcho:
    """`echo`, keeping the requests it was given."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return await echo(request)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """Run `scenario` on uvloop with a deadline; fail on any error the loop saw unhandled."""
    unhandled: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unhandled.append(context))
        await asyncio.wait_for(scenario, SCENARIO_TIMEOUT_S)
        gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
        await asyncio.sleep(0)

    uvloop.run(main())
    assert unhandled == [], f"the event loop saw unhandled errors: {unhandled}"


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[Request], Awaitable[Response | None]] = echo, **settings: Any
) -> AsyncIterator[Server]:
    settings = {"max_body_bytes": MAX_BODY, "max_head_bytes": MAX_HEAD} | settings
    server = Server(handler, error_body, **settings)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close(0)


@dataclass
class Reply:
    status: int
    head: bytes  # as received, up to and without the blank line
    headers: dict[str, str]  # lower-case names
    body: bytes  # the payload (chunked framing removed)
    raw_body: bytes  # the body bytes as received

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A raw HTTP/1.1 connection: send bytes, read replies exactly as framed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: Server) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ports[0])
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, close_delimited: bool = False, within: float = PROMPT_S) -> Reply:
        return await asyncio.wait_for(self._reply(close_delimited), within)

    async def _reply(self, close_delimited: bool) -> Reply:
        head = (await self.reader.readuntil(b"\r\n\r\n"))[:-4]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} sent twice"
            headers[name.lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        if status < 200:
            return Reply(status, head, headers, b"", b"")
        if headers.get("transfer-encoding") == "chunked":
            body, raw = bytearray(), bytearray()
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line, 16)
                data = await self.reader.readexactly(size + 2)
                raw += size_line + data
                body += data[:-2]
                if size == 0:
                    return Reply(status, head, headers, bytes(body), bytes(raw))
        if close_delimited:
            body = await self.reader.read()
        else:
            body = await self.reader.readexactly(int(headers["content-length"]))
        return Reply(status, head, headers, body, body)

    async def request(self, data: bytes) -> Reply:
        await self.send(data)
        return await self.reply()

    async def closed_by_server(self, within: float = PROMPT_S) -> bool:
        """True once the server closed the connection (EOF or reset) within `within` seconds."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), within)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        assert rest == b"", f"unexpected bytes before the close: {rest[:200]!r}"
        return True

    async def read_until_closed(self) -> bytes:
        return await asyncio.wait_for(self.reader.read(), PROMPT_S)

    def close(self) -> None:
        self.writer.close()


def get(path: str = "/", *, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: test\r\n{extra}\r\n".encode()


def post(body: bytes, *, extra: str = "") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def assert_json_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == code


# -- the head -------------------------------------------------------------------------------------
def test_head_over_max_head_bytes_is_431_json_and_the_connection_closed():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            headers = "".join(f"X-Filler-{i}: {'v' * 90}\r\n" for i in range(30))  # ~3,000 bytes
            reply = await client.request(get(extra=headers))
            assert_json_error(reply, 431, "head_too_large")
            assert reply.headers["connection"] == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_more_header_lines_than_max_headers_is_431_json_and_the_connection_closed():
    async def scenario() -> None:
        async with serving(max_headers=10) as server:
            client = await Client.connect(server)
            reply = await client.request(get(extra="".join(f"X-{i}: v\r\n" for i in range(10))))
            assert_json_error(reply, 431, "too_many_headers")  # Host and ten more
            assert await client.closed_by_server()

    run(scenario())


def test_head_check_answers_a_request_with_a_body_before_reading_it_and_skips_one_without():
    seen: list[str] = []

    def refuse(request: Request) -> Response | None:
        seen.append(request.path)
        return Response(401, b"no", {"Content-Type": "text/plain"})

    async def scenario() -> None:
        async with serving(head_check=refuse) as server:
            client = await Client.connect(server)
            await client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n")  # no body
            reply = await client.reply()
            assert (reply.status, reply.body, reply.headers["connection"]) == (401, b"no", "close")

    async def bodyless() -> None:
        async with serving(head_check=refuse) as server:
            client = await Client.connect(server)
            assert (await client.request(get())).status == 200

    run(scenario())
    run(bodyless())
    assert seen == ["/echo"]


def test_endless_header_line_sent_in_pieces_is_431():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: ")
            sent = 0
            with contextlib.suppress(ConnectionError):  # the server may close before all is sent
                for _ in range(10):  # up to 5,000 bytes of one header value, no line end
                    await client.send(b"a" * 500)
                    sent += 500
                    await asyncio.sleep(0.01)  # separate reads on the server's side
            assert sent > MAX_HEAD - 500  # not stopped before the limit
            assert_json_error(await client.reply(), 431, "head_too_large")
            assert await client.closed_by_server()

    run(scenario())


def test_head_within_the_limit_arriving_in_pieces_is_served():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            request = get(extra=f"X-Long: {'v' * 1500}\r\nX-After: 1\r\n")  # ~1,560 bytes
            assert len(request) < MAX_HEAD
            for start in range(0, len(request), 500):  # the long line arrives over four reads
                await client.send(request[start : start + 500])
                await asyncio.sleep(0.01)
            reply = await client.reply()
            assert reply.status == 200
            assert reply.json()["headers"]["x-long"] == "v" * 1500

    run(scenario())


def test_pipelined_body_does_not_count_towards_the_next_requests_head():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            body = b"b" * MAX_BODY  # no line break: all of it precedes the next request line
            second = get("/second?q=" + "v" * 1500)  # a head of ~1,530 bytes, within the limit
            # One read ends inside the second request line: body and that line are 2,100 bytes.
            await client.send(post(body) + second[:1100])
            await asyncio.sleep(0.05)
            await client.send(second[1100:])
            assert (await client.reply()).json()["body"] == body.decode()
            assert (await client.reply()).json()["path"] == "/second"

    run(scenario())


@pytest.mark.parametrize(
    "part_sent",
    [b"GET / HTTP/1.1\r\nHost: te", post(b"0123456789")[:-5]],
    ids=["head", "body"],  # half a head; a whole head and half the body
)
def test_request_arriving_slower_than_receive_timeout_is_408(part_sent):
    async def scenario() -> None:
        async with serving(receive_timeout=0.5) as server:
            client = await Client.connect(server)
            await client.send(part_sent)
            reply = await client.reply(within=SWEEP_WAIT_S)
            assert_json_error(reply, 408, "request_timeout")
            assert await client.closed_by_server()

    run(scenario())


# -- keep-alive -----------------------------------------------------------------------------------
def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout():
    async def scenario() -> None:
        async with serving(keep_alive_timeout=0.5) as server:
            client = await Client.connect(server)
            assert (await client.request(get())).status == 200
            assert await client.closed_by_server(within=SWEEP_WAIT_S)

    run(scenario())


def test_connection_busy_past_both_timeouts_is_not_closed():
    async def slow(request: Request) -> Response:
        if request.path == "/slow":
            await asyncio.sleep(2.2)  # two sweeps with both timeouts passed
        return Response(200, b"done")

    async def scenario() -> None:
        async with serving(slow, keep_alive_timeout=0.5, receive_timeout=0.5) as server:
            client = await Client.connect(server)
            await client.send(get("/slow"))
            reply = await client.reply(within=SWEEP_WAIT_S + 1)
            assert (reply.status, reply.body) == (200, b"done")
            assert "connection" not in reply.headers
            assert (await client.request(get())).status == 200  # and it is still open

    run(scenario())


def test_http10_without_keep_alive_gets_connection_close_and_is_closed():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            reply = await client.request(get(version="1.0"))
            assert reply.status == 200
            assert reply.headers["connection"] == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_http10_with_keep_alive_is_told_keep_alive_and_stays_open():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            for _ in range(2):
                reply = await client.request(get(version="1.0", extra="Connection: keep-alive\r\n"))
                assert reply.status == 200
                assert reply.headers["connection"] == "keep-alive"

    run(scenario())


def test_pipelined_requests_are_answered_in_order():
    async def slow_first(request: Request) -> Response:
        if request.path == "/first":
            await asyncio.sleep(0.2)  # the second is complete long before the first is answered
        return Response(200, request.path.encode())

    async def scenario() -> None:
        async with serving(slow_first) as server:
            client = await Client.connect(server)
            await client.send(get("/first") + get("/second") + get("/third"))
            assert [(await client.reply()).body for _ in range(3)] == [b"/first", b"/second", b"/third"]

    run(scenario())


def test_bad_request_pipelined_behind_a_good_one_is_answered_after_it():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.2)
        return Response(200, b"first")

    async def scenario() -> None:
        async with serving(slow) as server:
            client = await Client.connect(server)
            await client.send(get("/first") + b"GET / HTTP/1.1\r\nHost: test\r\nBad Header: x\r\n\r\n")
            first = await client.reply()
            assert (first.status, first.body) == (200, b"first")
            assert_json_error(await client.reply(), 400, "bad_http")
            assert await client.closed_by_server()

    run(scenario())


# -- request bodies -------------------------------------------------------------------------------
def test_expect_100_continue_gets_100_before_the_body_is_sent():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            request = post(b"hello", extra="Expect: 100-continue\r\n")
            await client.send(request[:-5])
            interim = await client.reply()
            assert interim.head == b"HTTP/1.1 100 Continue"
            await client.send(b"hello")
            assert (await client.reply()).json()["body"] == "hello"

    run(scenario())


def test_expect_100_continue_over_the_body_limit_gets_413_without_100():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(post(b"x" * (MAX_BODY + 1), extra="Expect: 100-continue\r\n")[: -MAX_BODY - 1])
            reply = await client.reply()
            assert_json_error(reply, 413, "body_too_large")
            assert await client.closed_by_server()

    run(scenario())


def test_100_continue_for_a_pipelined_request_waits_for_the_answer_before_it():
    release = asyncio.Event()

    async def streaming(request: Request) -> None:
        if request.path == "/stream":
            stream = request.start_stream(200, {})
            await stream.write(b"one")
            await release.wait()
            await stream.write(b"two")
            stream.end()
            return None
        return await echo(request)

    async def scenario() -> None:
        async with serving(streaming) as server:
            client = await Client.connect(server)
            second = post(b"hello", extra="Expect: 100-continue\r\n")
            await client.send(get("/stream") + second[:-5])
            await asyncio.sleep(0.1)
            release.set()
            stream = await client.reply()
            assert stream.raw_body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
            assert (await client.reply()).head == b"HTTP/1.1 100 Continue"
            await client.send(b"hello")
            assert (await client.reply()).json()["body"] == "hello"

    run(scenario())


def test_content_length_at_the_limit_is_accepted():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            body = b"x" * MAX_BODY
            assert (await client.request(post(body))).json()["body"] == body.decode()

    run(scenario())


def test_client_still_sending_an_over_limit_body_reads_the_413_not_a_reset():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 8000000\r\n\r\n")
            for _ in range(40):  # 8 MB that the server has refused; it must not reset the connection
                await client.send(b"x" * 200_000)
            assert_json_error(await client.reply(), 413, "body_too_large")
            assert await client.read_until_closed() == b""  # a clean end of stream after the answer

    run(scenario())


def test_connection_lingering_after_an_error_answer_is_closed_by_the_sweep():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            reply = await client.request(post(b"x" * (MAX_BODY + 1)))
            assert_json_error(reply, 413, "body_too_large")
            assert len(server.connections) == 1  # lingering: the client sent no end of stream
            started = time.monotonic()
            while server.connections and time.monotonic() - started < 5:
                await asyncio.sleep(0.1)
            assert server.connections == set()
            assert 1.5 < time.monotonic() - started < 3.5  # the linger (2 s), ended by a sweep

    run(scenario())


def test_chunked_body_over_the_limit_is_413():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                await client.send(b"190\r\n" + b"x" * 400 + b"\r\n")  # 1,200 bytes in all
            assert_json_error(await client.reply(), 413, "body_too_large")
            assert await client.closed_by_server()

    run(scenario())


def test_chunked_body_within_the_limit_reaches_the_handler_whole():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"abc", b"defgh", b"x" * 300):
                await client.send(b"%x\r\n%b\r\n" % (len(piece), piece))
                await asyncio.sleep(0.01)
            await client.send(b"0\r\n\r\n")
            assert (await client.reply()).json()["body"] == "abcdefgh" + "x" * 300

    run(scenario())


# -- streamed answers -----------------------------------------------------------------------------
async def three_chunks(request: Request) -> None:
    stream = request.start_stream(200, {"Content-Type": "text/event-stream"})
    for data in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
        await stream.write(data)
    stream.end()


def test_streamed_answer_is_chunked_on_http11_and_ends_with_the_terminating_chunk():
    async def scenario() -> None:
        async with serving(three_chunks) as server:
            client = await Client.connect(server)
            reply = await client.request(get())
            assert reply.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in reply.headers
            assert reply.raw_body == (
                b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
            )
            assert (await client.request(get())).status == 200  # the connection is reused

    run(scenario())


def test_streamed_answer_with_a_length_has_content_length_and_keeps_the_connection():
    async def sized(request: Request) -> None:
        stream = request.start_stream(200, {"Content-Type": "application/json"}, length=8)
        for data in (b'{"a"', b": 1}"):
            await stream.write(data)
        stream.end()

    async def scenario() -> None:
        async with serving(sized) as server:
            client = await Client.connect(server)
            reply = await client.request(get())
            assert (reply.headers["content-length"], reply.raw_body) == ("8", b'{"a": 1}')
            assert "transfer-encoding" not in reply.headers
            assert (await client.request(get())).status == 200  # the connection is reused

    run(scenario())


def test_streamed_answer_on_http10_is_close_delimited():
    async def scenario() -> None:
        async with serving(three_chunks) as server:
            client = await Client.connect(server)
            await client.send(get(version="1.0", extra="Connection: keep-alive\r\n"))
            reply = await client.reply(close_delimited=True)
            assert "transfer-encoding" not in reply.headers
            assert "content-length" not in reply.headers
            assert reply.headers["connection"] == "close"
            assert reply.body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"

    run(scenario())


def test_pipelined_http11_request_does_not_change_the_framing_of_an_http10_answer_before_it():
    async def slow_stream(request: Request) -> None:
        await asyncio.sleep(0.1)  # the HTTP/1.1 request behind it is parsed meanwhile
        await three_chunks(request)

    async def scenario() -> None:
        async with serving(slow_stream) as server:
            client = await Client.connect(server)
            await client.send(get("/a", version="1.0", extra="Connection: keep-alive\r\n") + get("/b"))
            reply = await client.reply(close_delimited=True)
            assert "transfer-encoding" not in reply.headers
            assert reply.body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"

    run(scenario())


def test_handler_raising_mid_stream_closes_the_connection_without_the_terminating_chunk(caplog):
    async def breaks(request: Request) -> None:
        stream = request.start_stream(200, {})
        await stream.write(b"partial")
        raise RuntimeError("upstream broke")

    async def scenario() -> None:
        async with serving(breaks) as server:
            client = await Client.connect(server)
            await client.send(get())
            received = await client.read_until_closed()
            assert b"Transfer-Encoding: chunked" in received
            assert received.endswith(b"7\r\npartial\r\n")

    with caplog.at_level(logging.ERROR, logger="model_gateway.http"):
        run(scenario())
    assert "unhandled error" in caplog.text


def test_stream_ended_after_the_client_left_is_not_an_error(caplog):
    finished = asyncio.Event()

    async def ends_late(request: Request) -> None:
        stream = request.start_stream(200, {})
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            # A handler that still tidies up: the answer cannot be sent any more.
            with contextlib.suppress(ClientGone):
                await stream.write(b"late")
            stream.end()
            finished.set()
            raise

    async def scenario() -> None:
        async with serving(ends_late) as server:
            client = await Client.connect(server)
            await client.send(get())
            await client.reader.readuntil(b"\r\n\r\n")
            client.close()
            await asyncio.wait_for(finished.wait(), PROMPT_S)

    with caplog.at_level(logging.ERROR, logger="model_gateway.http"):
        run(scenario())
    assert caplog.text == ""


# -- handler errors, cancellation, flow control ---------------------------------------------------
def test_handler_raising_before_answering_is_500_json_and_the_connection_stays_usable():
    async def fails_once(request: Request) -> Response:
        if request.path == "/fail":
            raise RuntimeError("bug")
        return Response(200, b"fine")

    async def scenario() -> None:
        async with serving(fails_once) as server:
            client = await Client.connect(server)
            reply = await client.request(get("/fail"))
            assert_json_error(reply, 500, "internal_error")
            # The request was read whole, so the connection is still in step: keep it.
            assert "connection" not in reply.headers
            assert (await client.request(get("/next"))).body == b"fine"

    run(scenario())


def test_handler_answering_none_without_a_stream_is_500_json():
    async def no_answer(request: Request) -> None:
        return None

    async def scenario() -> None:
        async with serving(no_answer) as server:
            client = await Client.connect(server)
            assert_json_error(await client.request(get()), 500, "internal_error")

    run(scenario())


def test_client_closing_mid_request_cancels_the_handler():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def waits(request: Request) -> Response:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    async def scenario() -> None:
        async with serving(waits) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.wait_for(started.wait(), PROMPT_S)
            client.close()
            await asyncio.wait_for(cancelled.wait(), PROMPT_S)

    run(scenario())


def test_handler_answering_after_its_client_left_is_dropped_quietly(caplog):
    answered = asyncio.Event()

    async def shielded(request: Request) -> Response:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        answered.set()
        return Response(200, b"nobody is listening")

    async def scenario() -> None:
        async with serving(shielded) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.sleep(0.1)
            client.close()
            await asyncio.wait_for(answered.wait(), PROMPT_S)
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.ERROR, logger="model_gateway.http"):
        run(scenario())
    assert caplog.text == ""


def test_slow_reader_makes_stream_writes_wait_and_reading_resumes_them():
    piece = b"x" * 65536
    written = 0
    total = 400  # 26 MB: far more than the socket buffers hold

    async def firehose(request: Request) -> None:
        nonlocal written
        stream = request.start_stream(200, {})
        for _ in range(total):
            await stream.write(piece)
            written += 1
        stream.end()

    async def scenario() -> None:
        async with serving(firehose) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.sleep(0.5)  # the client reads nothing meanwhile
            paused_at = written
            await asyncio.sleep(0.3)
            assert written == paused_at < total, "the writer went on while the client read nothing"
            (connection,) = server.connections
            assert connection.write_paused
            assert connection.transport is not None
            # What waits in the process is the transport's high-water mark, not the whole answer.
            assert connection.transport.get_write_buffer_size() < 1024 * 1024
            reply = await client.reply(within=10)
            assert len(reply.body) == total * len(piece)
            assert written == total

    run(scenario())


def test_client_reading_nothing_for_send_timeout_is_disconnected_and_the_handler_cancelled():
    cancelled = asyncio.Event()

    async def firehose(request: Request) -> None:
        stream = request.start_stream(200, {})
        try:
            while True:
                await stream.write(b"x" * 65536)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        async with serving(firehose, send_timeout=0.5) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.wait_for(cancelled.wait(), SWEEP_WAIT_S)
            assert server.connections == set()

    run(scenario())


def test_unread_whole_answer_is_dropped_after_send_timeout():
    async def big(request: Request) -> Response:
        return Response(200, b"x" * 30_000_000)  # far more than the socket buffers hold

    async def scenario() -> None:
        async with serving(big, send_timeout=0.5) as server:
            client = await Client.connect(server)
            await client.send(get())
            started = time.monotonic()  # the client reads nothing
            while server.connections and time.monotonic() - started < SWEEP_WAIT_S:
                await asyncio.sleep(0.1)
            assert server.connections == set()

    run(scenario())


# -- request targets and protocols ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "path", "query"),
    [("http://example.com/health?x=1", "/health", "x=1"), ("/v1/models?a=1&b=2", "/v1/models", "a=1&b=2")],
    ids=["absolute_form", "origin_form"],
)
def test_request_target_gives_path_and_query(target, path, query):
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            seen = (await client.request(get(target))).json()
            assert (seen["path"], seen["query"]) == (path, query)

    run(scenario())


def test_websocket_upgrade_is_answered_over_http11_then_closed():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            reply = await client.request(get("/ws", extra=upgrade))
            assert reply.head.startswith(b"HTTP/1.1 200 ")
            assert reply.json()["path"] == "/ws"
            assert reply.headers["connection"] == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_upgrade_request_with_a_body_is_400_rather_than_handled_without_its_body():
    handler = RecordingEcho()

    async def scenario() -> None:
        async with serving(handler) as server:
            client = await Client.connect(server)
            upgrade = (
                "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
            )
            reply = await client.request(post(b'{"model": "m"}', extra=upgrade))
            assert_json_error(reply, 400, "unsupported_upgrade")
            assert await client.closed_by_server()

    run(scenario())
    assert handler.requests == []


def test_connect_is_400_json_and_never_reaches_the_handler():
    handler = RecordingEcho()

    async def scenario() -> None:
        async with serving(handler) as server:
            for target in ("example.com:443", "/tunnel"):
                client = await Client.connect(server)
                reply = await client.request(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                assert_json_error(reply, 400, "unsupported_upgrade")
                assert await client.closed_by_server()

    run(scenario())
    assert handler.requests == []


def test_head_request_gets_the_headers_and_no_body():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"HEAD /health HTTP/1.1\r\nHost: test\r\n\r\n")
            head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), PROMPT_S)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
            # No body follows: the next bytes are the next answer.
            assert (await client.request(get("/after"))).json()["path"] == "/after"

    run(scenario())


def test_malformed_request_is_400_json_and_the_server_keeps_serving():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            assert_json_error(await client.request(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400, "bad_http")
            assert await client.closed_by_server()
            assert (await (await Client.connect(server)).request(get())).status == 200

    run(scenario())


def test_date_header_is_present_and_current():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await asyncio.sleep(3)  # a date made once at the start would now be 3 s old
            reply = await client.request(get())
            sent = parsedate_to_datetime(reply.headers["date"]).timestamp()
            assert reply.headers["date"].endswith(" GMT")
            # Whole seconds, refreshed by the sweep once a second: at most about 2 s behind.
            assert 0 <= time.time() - sent < 2.5

    run(scenario())


# -- close(grace) ---------------------------------------------------------------------------------
def test_close_stops_accepting_new_connections():
    async def scenario() -> None:
        async with serving() as server:
            port = server.ports[0]
            await server.close(1)
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)

    run(scenario())


def test_close_closes_idle_connections_at_once():
    async def scenario() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            assert (await client.request(get())).status == 200
            started = time.monotonic()
            await server.close(5)
            assert time.monotonic() - started < 0.5
            assert await client.closed_by_server(within=0.5)

    run(scenario())


def test_close_lets_a_running_request_finish_within_the_grace():
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.3)
        return Response(200, b"finished")

    async def scenario() -> None:
        async with serving(slow) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.sleep(0.05)
            await server.close(3)
            reply = await client.reply()
            assert (reply.status, reply.body) == (200, b"finished")
            assert reply.headers["connection"] == "close"
            assert await client.closed_by_server()

    run(scenario())


def test_close_cancels_a_request_running_past_the_grace():
    cancelled = asyncio.Event()

    async def endless(request: Request) -> Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    async def scenario() -> None:
        async with serving(endless) as server:
            client = await Client.connect(server)
            await client.send(get())
            await asyncio.sleep(0.05)
            started = time.monotonic()
            await server.close(0.3)
            assert 0.25 < time.monotonic() - started < 1.5
            assert cancelled.is_set()
            assert await client.read_until_closed() == b""

    run(scenario())
