"""A backend's answer never breaks the client or the gateway: interim answers, bodies that cannot
be there, invalid framing, header injection, odd status lines, Retry-After.

The broken backend is tests/raw_upstream.py (bytes exactly as the test writes them), tried first;
behind it a working fault upstream, so a refused answer shows as a failover to it. One gateway
serves the whole module (its breaker never opens here), each test scripting the raw backend anew.
"""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import formatdate

import pytest
import requests
import uvloop
from model_gateway._proxy import retry_after_seconds
from model_gateway._upstream import Pool
from raw_upstream import Close, RawUpstream
from utils import API_KEY, FaultUpstream, Gateway, backend, wait_for

COMPLETION = json.dumps(
    {"id": "raw", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "raw"}}]}
).encode()
# Long enough to show a gateway waiting for a close; short enough for a failing test to end.
PROMPT_S = 5


def ok_answer(body: bytes = COMPLETION, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.fixture(scope="module")
def raw() -> RawUpstream:
    upstream = RawUpstream([ok_answer()]).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def good(log_dir):
    upstream = FaultUpstream().start(log_dir)
    yield upstream
    upstream.stop()


def _start(log_dir, backends, **settings) -> Gateway:
    return Gateway(backends, GATEWAY_BREAKER_FAILURES="100000", **settings).start(log_dir)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def gateway(raw, good, log_dir):
    gw = _start(
        log_dir, [backend("raw", raw.url, ["m"], priority=0), backend("good", good.url, ["m"], priority=1)]
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def gateway_raw_only(raw, log_dir):
    gw = _start(log_dir, [backend("raw", raw.url, ["m"])])
    yield gw
    gw.stop()


def chat(gateway: Gateway) -> requests.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return requests.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=PROMPT_S)


def assert_served_by_the_good_backend(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "good"
    assert response.json()["id"] == "chatcmpl-fake"


INTERIM = {
    "100_continue": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103_early_hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
    "two_interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
}


@pytest.mark.parametrize("interim", INTERIM.values(), ids=INTERIM.keys())
def test_interim_answers_are_skipped_and_the_final_answer_reaches_the_client(gateway, raw, interim):
    raw.set(interim + ok_answer())
    response = chat(gateway)
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "raw"
    assert response.content == COMPLETION


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_answer_without_a_body_by_definition_does_not_wait_for_the_backend_to_close(gateway, raw, status):
    raw.set(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n\r\n")  # no length, kept open
    response = chat(gateway)  # times out (PROMPT_S) if the gateway waits for a close
    assert response.status_code == int(status[:3])
    assert response.content == b""
    assert "content-length" not in response.headers


def test_answer_to_head_has_no_body_whatever_its_length_says(raw):
    raw.set(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", ok_answer())

    async def scenario() -> tuple[bytes, bytes]:
        pool = Pool(raw.url, 1.0)
        try:
            head = await pool.request("HEAD", "/", "")
            head_body = await asyncio.wait_for(head.read(), PROMPT_S)
            after = await pool.request("POST", "/", "", b"{}")  # the same connection, in sync
            return head_body, await after.read()
        finally:
            pool.close()

    assert uvloop.run(scenario()) == (b"", COMPLETION)
    assert raw.connections == 1


BAD_FRAMING = {
    "content_length_not_a_number": b"Content-Length: abc\r\n",
    "content_length_negative": b"Content-Length: -1\r\n",
    "content_length_with_sign": b"Content-Length: +5\r\n",
    "conflicting_content_lengths": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "conflicting_lengths_in_one_field": b"Content-Length: 5, 6\r\n",
    "content_length_and_chunked": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
}


@pytest.mark.parametrize("framing", BAD_FRAMING.values(), ids=BAD_FRAMING.keys())
def test_invalid_length_fails_over_and_the_connection_is_discarded(gateway, raw, framing):
    raw.set(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n" + COMPLETION)
    assert_served_by_the_good_backend(chat(gateway))
    wait_for(lambda: raw.closed_by_peer >= 1, seconds=PROMPT_S)


def test_invalid_length_on_the_only_backend_is_a_json_502(gateway_raw_only, raw):
    raw.set(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}")
    response = chat(gateway_raw_only)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


BAD_CHUNKS = {
    "hex_prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "underscore": b"0_5\r\nhello\r\n0\r\n\r\n",
    "not_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "no_crlf_after_data": b"5\r\nhelloX0\r\n\r\n",
}


@pytest.mark.parametrize("chunks", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_invalid_chunked_body_fails_over(gateway, raw, chunks):
    raw.set(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert_served_by_the_good_backend(chat(gateway))


INJECTED = {
    "bare_lf": b"Content-Type: application/json\nSet-Cookie: injected=1\r\n",
    "bare_cr": b"Content-Type: application/json\rSet-Cookie: injected=1\r\n",
    "nul": b"Content-Type: application/json\0Set-Cookie: injected=1\r\n",
    "obs_fold": b"Content-Type: application/json\r\n Set-Cookie: injected=1\r\n",
    "space_before_colon": b"Content-Type : text/html\r\n",
}


@pytest.mark.parametrize("header", INJECTED.values(), ids=INJECTED.keys())
def test_malformed_header_line_is_refused_and_never_forwarded(gateway, raw, header):
    raw.set(b"HTTP/1.1 200 OK\r\n" + header + b"Content-Length: %d\r\n\r\n" % len(COMPLETION) + COMPLETION)
    response = chat(gateway)
    assert_served_by_the_good_backend(response)
    assert "set-cookie" not in response.headers
    assert response.headers["content-type"] == "application/json; charset=utf-8"


STATUS_LINES = {
    "000": b"HTTP/1.1 000 Zero",
    "099": b"HTTP/1.1 099 Low",
    "600": b"HTTP/1.1 600 High",
    "two_digits": b"HTTP/1.1 20 OK",
    "four_digits": b"HTTP/1.1 2000 OK",
    "101_unasked": b"HTTP/1.1 101 Switching Protocols",
    "http_2": b"HTTP/2 200 OK",
}


@pytest.mark.parametrize("status_line", STATUS_LINES.values(), ids=STATUS_LINES.keys())
def test_status_outside_100_to_599_is_a_backend_failure(gateway, raw, status_line):
    raw.set(Close(status_line + b"\r\nContent-Type: application/json\r\n\r\n" + COMPLETION))
    assert_served_by_the_good_backend(chat(gateway))


def test_answer_body_closed_by_the_backend_reaches_the_client_whole(gateway, raw):
    raw.set(Close(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + COMPLETION))
    response = chat(gateway)
    assert response.headers["x-gateway-backend"] == "raw"
    assert response.content == COMPLETION


CAP = 120.0
RETRY_AFTER = {
    "seconds": ("7", 7.0),
    "zero": ("0", 0.0),
    "over_the_cap": ("86400", CAP),
    "too_many_digits": ("9" * 40, CAP),
    "inf": ("inf", None),
    "nan": ("nan", None),
    "exponent": ("1e3", None),
    "negative": ("-5", None),
    "fraction": ("1.5", None),
    "garbage": ("soon", None),
    "empty": ("", None),
    "date_in_the_past": ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
}


@pytest.mark.parametrize(("value", "seconds"), RETRY_AFTER.values(), ids=RETRY_AFTER.keys())
def test_retry_after_is_delta_seconds_or_a_date_capped_and_anything_else_absent(value, seconds):
    assert retry_after_seconds(value, CAP) == seconds


def test_retry_after_http_date_is_the_time_until_that_date():
    value = formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(value, CAP)
    assert seconds is not None and 28 <= seconds <= 30
