"""Bad input gets a 4xx in OpenAI's shape, never reaches a backend, and leaves the gateway healthy."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from utils import API_KEY, HTTP_TIMEOUT, backend


@pytest.fixture
def gateway(start_gateway, upstream):
    gw = start_gateway([backend("fake", upstream.url, ["m"])], GATEWAY_MAX_BODY_BYTES=str(1024 * 1024))
    gw.upstream = upstream
    return gw


def _post_raw(gateway, body: bytes, path: str = "/v1/chat/completions") -> requests.Response:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    return requests.post(gateway.url + path, data=body, headers=headers, timeout=HTTP_TIMEOUT)


def _assert_openai_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


HI = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
BAD_BODIES = {
    "malformed_json": b'{"model": "m", "messages": [',
    "json_array_not_object": b'[{"model": "m"}]',
    "missing_messages": b'{"model": "m"}',
    "messages_not_a_list": b'{"model": "m", "messages": "hello"}',
    "message_without_role": b'{"model": "m", "messages": [{"content": "hi"}]}',
    "model_not_a_string": b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}',
    "missing_model": b'{"messages": [{"role": "user", "content": "hi"}]}',
    "stream_not_a_bool": b'{"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
    "max_tokens_a_string": b'{"model": "m", "max_tokens": "ten", "messages": [{"role": "user"}]}',
    "temperature_a_bool": b'{"model": "m", "temperature": true, "messages": [{"role": "user"}]}',
    "overlong_model_name": json.dumps(
        {"model": "m" * 300, "messages": [{"role": "user", "content": "x"}]}
    ).encode(),
    "non_utf8_bytes": b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "empty_body": b"",
    # Hostile JSON: what the parser cannot handle, what is not JSON, what is not a sane value.
    "nested_100000_deep": b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nan_literal_nested": b'{"model": "m", "messages": [{"role": "user", "content": NaN}]}',
    "infinity_literal": b'{"model": "m", "temperature": Infinity, "messages": [{"role": "user"}]}',
    "minus_infinity_literal": b'{"model": "m", "top_p": -Infinity, "messages": [{"role": "user"}]}',
    "temperature_1e999": b'{"model": "m", "temperature": 1e999, "messages": [{"role": "user"}]}',
    "temperature_30_digits": b'{"model": "m", "temperature": 123456789012345678901234567890,'
    b' "messages": [{"role": "user"}]}',
    "max_tokens_30_digits": b'{"model": "m", "max_tokens": 123456789012345678901234567890,'
    b' "messages": [{"role": "user"}]}',
    "seed_30_digits": b'{"model": "m", "seed": -123456789012345678901234567890,'
    b' "messages": [{"role": "user"}]}',
    "utf16_with_bom": HI.encode("utf-16"),
    "utf16_without_bom": HI.encode("utf-16-le"),
    "utf32": HI.encode("utf-32"),
    "utf8_bom": b'\xef\xbb\xbf{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
    "lone_surrogate_escape": b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone_low_surrogate_escape": b'{"model": "m", "messages": [{"role": "user", "content": "a\\udc00b"}]}',
    "surrogate_encoded_in_utf8": b'{"model": "m", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
    "duplicate_model_key": b'{"model": "m2", "model": "m", "messages": [{"role": "user"}]}',
    "duplicate_nested_key": b'{"model": "m", "messages": [{"role": "user", "role": "system"}]}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_is_rejected_with_400_and_never_reaches_a_backend(gateway, body):
    _assert_openai_error(_post_raw(gateway, body), 400)
    assert gateway.upstream.received() == []
    assert gateway.chat().status_code == 200  # and the gateway still serves


def test_surrogate_pair_escape_is_valid_and_forwarded_as_sent(gateway):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    assert _post_raw(gateway, body).status_code == 200
    assert gateway.upstream.received()[0]["body"] == body.decode()


def test_completions_without_prompt_is_rejected(gateway):
    error = _assert_openai_error(_post_raw(gateway, b'{"model": "m"}', "/v1/completions"), 400)
    assert error["param"] == "prompt"


def test_embeddings_without_input_is_rejected(gateway):
    error = _assert_openai_error(_post_raw(gateway, b'{"model": "m"}', "/v1/embeddings"), 400)
    assert error["param"] == "input"


def test_unknown_model_is_404(gateway):
    error = _assert_openai_error(gateway.chat(model="no-such-model"), 404)
    assert error["code"] == "model_not_found"


def test_20_mb_body_is_413_and_the_gateway_stays_healthy(gateway):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"a" * (20 * 1024 * 1024) + b'"}]}'
    try:
        response = _post_raw(gateway, body)
    except requests.ConnectionError:
        pytest.fail("the gateway dropped the connection instead of answering 413")
    error = _assert_openai_error(response, 413)
    assert error["code"] == "body_too_large"
    assert gateway.upstream.received() == []
    assert gateway.chat().status_code == 200


def test_chunked_body_over_the_limit_is_413(gateway):
    def chunks():
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(3):
            yield b"a" * (1024 * 1024)
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    response = requests.post(gateway.url + "/v1/chat/completions", data=chunks(), headers=headers, timeout=30)
    _assert_openai_error(response, 413)


def _raw_http(gateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and b'"error"' in received:
                break
    return received


@pytest.mark.parametrize(
    "header",
    [b"X-Request-Id: abc\rInjected: 1", b"X-Request-Id: abc\nInjected-Without-CR", b"X-Bad\r\n: value"],
    ids=["bare_cr", "bare_lf", "cr_lf_in_name"],
)
def test_crlf_in_headers_is_a_json_400(gateway, header):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\n"
        + header
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = _raw_http(gateway, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert b"application/json" in head
    assert json.loads(payload)["error"]["code"] == "bad_http"
    assert gateway.upstream.received() == []
    assert gateway.chat().status_code == 200


def test_non_utf8_header_value_is_rejected_or_ignored_but_never_forwarded(gateway):
    request = (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    head = _raw_http(gateway, request).partition(b"\r\n\r\n")[0]
    assert head.split(b" ")[1] in (b"400", b"401")
    assert gateway.chat().status_code == 200


def test_missing_key_is_401(gateway):
    response = requests.post(
        gateway.url + "/v1/chat/completions", json={"model": "m", "messages": []}, timeout=HTTP_TIMEOUT
    )
    error = _assert_openai_error(response, 401)
    assert error["code"] == "missing_api_key"


def test_health_and_metrics_need_no_key(gateway):
    assert requests.get(gateway.url + "/health", timeout=HTTP_TIMEOUT).status_code == 200
    assert requests.get(gateway.url + "/metrics", timeout=HTTP_TIMEOUT).status_code == 200


def test_unknown_path_is_a_json_404(gateway):
    _assert_openai_error(requests.get(gateway.url + "/v2/whatever", timeout=HTTP_TIMEOUT), 404)


def test_wrong_method_is_a_json_405(gateway):
    response = requests.get(gateway.url + "/v1/chat/completions", timeout=HTTP_TIMEOUT)
    _assert_openai_error(response, 405)
    assert response.headers["allow"] == "POST"
