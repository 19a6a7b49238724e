"""Failover before the first byte, explicit errors after it, breaker, timeouts, limits.

The upstreams here are tests/fault_upstream.py (a faithful fake that injects faults); the real
llama-server is used in test_openai_client.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
import requests
from utils import API_KEY, backend, free_port, metric_value, sse_events, wait_for

FAST = {"GATEWAY_CONNECT_TIMEOUT_S": "1", "GATEWAY_FIRST_BYTE_TIMEOUT_S": "1", "GATEWAY_IDLE_TIMEOUT_S": "1"}


def _two(first_url: str, second_url: str) -> list[dict]:
    return [backend("first", first_url, ["m"], priority=0), backend("second", second_url, ["m"], priority=1)]


def test_refused_connection_fails_over_to_the_next_backend(start_gateway, upstream):
    gateway = start_gateway(_two(f"http://127.0.0.1:{free_port()}", upstream.url), **FAST)
    response = gateway.chat()
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "second"


def test_500_before_the_body_fails_over(start_gateway, upstream, upstream2):
    upstream.set("status", status=500)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    response = gateway.chat()
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "second"
    assert len(upstream.received()) == 1


def test_every_backend_failing_answers_502_also_for_streams(start_gateway, upstream, upstream2):
    upstream.set("status", status=500)
    upstream2.set("status", status=503)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    response = gateway.chat(stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_429_moves_to_the_next_backend(start_gateway, upstream, upstream2):
    upstream.set("status", status=429, retry_after=7)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    response = gateway.chat()
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "second"


def test_429_from_the_last_backend_reaches_the_client_with_retry_after(start_gateway, upstream):
    upstream.set("status", status=429, retry_after=7)
    gateway = start_gateway([backend("only", upstream.url, ["m"])])
    response = gateway.chat()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "fake 429"


def test_backend_that_asked_to_wait_is_skipped_until_retry_after(start_gateway, upstream, upstream2):
    upstream.set("status", status=429, retry_after=30)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    gateway.chat()
    upstream.set("ok")
    response = gateway.chat()
    assert response.headers["x-gateway-backend"] == "second"
    assert upstream.received() == []


def test_stall_past_the_first_byte_timeout_fails_over(start_gateway, upstream, upstream2):
    upstream.set("stall", seconds=5)
    gateway = start_gateway(_two(upstream.url, upstream2.url), **FAST)
    started = time.monotonic()
    response = gateway.chat(stream=True)
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "second"
    assert time.monotonic() - started < 4


def test_stall_on_the_only_backend_answers_504(start_gateway, upstream):
    upstream.set("stall", seconds=5)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], **FAST)
    response = gateway.chat()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_slow_first_byte_within_the_timeout_is_served(start_gateway, upstream):
    upstream.set("slow_first_byte", seconds=0.5)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_FIRST_BYTE_TIMEOUT_S="3")
    response = gateway.chat(stream=True)
    assert response.status_code == 200
    assert sse_events(response)[-1] == "[DONE]"


def test_slow_first_byte_past_the_timeout_fails_over_before_any_byte_is_sent(
    start_gateway, upstream, upstream2
):
    upstream.set("slow_first_byte", seconds=3)
    gateway = start_gateway(_two(upstream.url, upstream2.url), **FAST)
    response = gateway.chat(stream=True)
    assert response.headers["x-gateway-backend"] == "second"
    assert sse_events(response)[-1] == "[DONE]"


def test_stream_cut_after_chunks_ends_with_an_error_event_and_no_done(start_gateway, upstream, upstream2):
    upstream.set("cut_after", chunks=3)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    response = gateway.chat(stream=True)
    assert response.status_code == 200  # the client had its 200 before the cut
    events = sse_events(response)
    assert "[DONE]" not in events
    assert len(events) == 4
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_cut"
    assert upstream2.received() == []  # never a second answer spliced onto the first


def test_stream_without_done_ends_with_an_error_event(start_gateway, upstream):
    upstream.set("no_done", chunks=5)
    gateway = start_gateway([backend("only", upstream.url, ["m"])])
    events = sse_events(gateway.chat(stream=True))
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_incomplete"


def test_idle_gap_between_chunks_past_the_timeout_ends_the_stream_with_an_error(start_gateway, upstream):
    upstream.set("ok", chunks=3, chunk_delay=2)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], **FAST)
    events = sse_events(gateway.chat(stream=True))
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_cut"


def test_total_timeout_ends_a_long_stream_with_an_error(start_gateway, upstream):
    upstream.set("ok", chunks=40, chunk_delay=0.1)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_TOTAL_TIMEOUT_S="1")
    started = time.monotonic()
    events = sse_events(gateway.chat(stream=True))
    assert time.monotonic() - started < 3
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_stream_cut"


def test_400_from_upstream_passes_through_without_failover_or_cooldown(start_gateway, upstream, upstream2):
    upstream.set("status", status=400)
    gateway = start_gateway(_two(upstream.url, upstream2.url), GATEWAY_BREAKER_FAILURES="1")
    for _ in range(3):
        response = gateway.chat()
        assert response.status_code == 400
        assert response.headers["x-gateway-backend"] == "first"
    assert upstream2.received() == []
    assert gateway.health()["backends"][0]["breaker"] == "closed"


def test_422_from_upstream_passes_through(start_gateway, upstream, upstream2):
    upstream.set("status", status=422)
    gateway = start_gateway(_two(upstream.url, upstream2.url))
    assert gateway.chat().status_code == 422
    assert upstream2.received() == []


def test_repeated_failures_open_the_breaker_and_skip_the_backend(start_gateway, upstream, upstream2):
    upstream.set("status", status=500)
    gateway = start_gateway(
        _two(upstream.url, upstream2.url), GATEWAY_BREAKER_FAILURES="2", GATEWAY_BREAKER_COOLDOWN_S="60"
    )
    for _ in range(4):
        assert gateway.chat().status_code == 200
    assert len(upstream.received()) == 2
    assert gateway.health()["backends"][0]["breaker"] == "open"


def test_open_breaker_lets_one_trial_through_after_the_cooldown_and_closes_on_success(
    start_gateway, upstream, upstream2
):
    upstream.set("status", status=500)
    gateway = start_gateway(
        _two(upstream.url, upstream2.url), GATEWAY_BREAKER_FAILURES="1", GATEWAY_BREAKER_COOLDOWN_S="0.5"
    )
    gateway.chat()
    upstream.set("ok")
    time.sleep(0.6)
    response = gateway.chat()
    assert response.headers["x-gateway-backend"] == "first"
    assert gateway.health()["backends"][0]["breaker"] == "closed"


def test_half_open_breaker_admits_a_single_trial_at_a_time(start_gateway, upstream, upstream2):
    upstream.set("status", status=500)
    gateway = start_gateway(
        _two(upstream.url, upstream2.url), GATEWAY_BREAKER_FAILURES="1", GATEWAY_BREAKER_COOLDOWN_S="0.3"
    )
    gateway.chat()
    upstream.set("stall", seconds=1.5)
    time.sleep(0.4)
    results: list[str] = []
    trial = threading.Thread(target=lambda: results.append(gateway.chat().headers["x-gateway-backend"]))
    trial.start()
    time.sleep(0.3)  # the trial is now in flight on "first"
    others = [gateway.chat().headers["x-gateway-backend"] for _ in range(3)]
    trial.join()
    assert others == ["second"] * 3
    assert len(upstream.received()) == 1  # since the stall was set: exactly one trial


def test_flapping_backend_is_taken_out_while_clients_keep_getting_answers(start_gateway, upstream, upstream2):
    upstream.set("flap", status=502)
    gateway = start_gateway(
        _two(upstream.url, upstream2.url), GATEWAY_BREAKER_FAILURES="2", GATEWAY_BREAKER_COOLDOWN_S="60"
    )
    statuses = [gateway.chat().status_code for _ in range(10)]
    assert statuses == [200] * 10
    # fail, ok (resets the count), fail, ok, ... never two in a row: the flapping backend keeps
    # serving every other request but each failure is retried elsewhere.
    assert metric_value(gateway.metrics(), "ai_failovers_total", backend="first") >= 1


def test_all_breakers_open_answers_503_with_retry_after(start_gateway, upstream):
    upstream.set("status", status=500)
    gateway = start_gateway(
        [backend("only", upstream.url, ["m"])], GATEWAY_BREAKER_FAILURES="1", GATEWAY_BREAKER_COOLDOWN_S="30"
    )
    assert gateway.chat().status_code == 502
    response = gateway.chat(stream=True)
    assert response.status_code == 503
    assert 1 <= int(response.headers["retry-after"]) <= 30


def test_request_for_a_full_backend_waits_for_a_slot_and_is_served(start_gateway, upstream):
    upstream.set("stall", seconds=1)
    gateway = start_gateway([backend("only", upstream.url, ["m"], max_concurrency=1)])
    first = threading.Thread(target=gateway.chat)
    first.start()
    time.sleep(0.3)
    response = gateway.chat()
    first.join()
    assert response.status_code == 200
    assert len(upstream.received()) == 2


def test_client_leaving_the_queue_is_never_sent_upstream_and_holds_no_slot(start_gateway, upstream):
    upstream.set("stall", seconds=1)
    gateway = start_gateway([backend("only", upstream.url, ["m"], max_concurrency=1)])
    first = threading.Thread(target=gateway.chat)
    first.start()
    time.sleep(0.3)
    with contextlib.suppress(requests.Timeout):
        requests.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers=gateway.headers,
            timeout=0.3,
        )
    first.join()
    wait_for(lambda: gateway.health()["backends"][0]["in_flight"] == 0)
    assert len(upstream.received()) == 1
    upstream.set("ok")
    assert gateway.chat().status_code == 200


QUEUE_LIMITS = {
    "queue_full": {"GATEWAY_MAX_PENDING": "0"},
    "wait_past_the_pending_timeout": {"GATEWAY_PENDING_TIMEOUT_S": "0.3"},
}


@pytest.mark.parametrize("settings", QUEUE_LIMITS.values(), ids=QUEUE_LIMITS.keys())
def test_full_backend_answers_429_with_retry_after_past_its_queue(start_gateway, upstream, settings):
    upstream.set("stall", seconds=1.5)
    gateway = start_gateway([backend("only", upstream.url, ["m"], max_concurrency=1)], **settings)
    first = threading.Thread(target=gateway.chat)
    first.start()
    time.sleep(0.4)
    response = gateway.chat()
    first.join()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert len(upstream.received()) == 1


def test_request_while_every_backend_waits_out_an_upstream_429_gets_429_not_503(start_gateway, upstream):
    upstream.set("status", status=429, retry_after=7)
    gateway = start_gateway([backend("only", upstream.url, ["m"])])
    assert gateway.chat().status_code == 429  # the backend's own 429, passed through
    response = gateway.chat()
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 7
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert len(upstream.received()) == 1


def test_retry_after_inf_is_read_as_absent_and_the_backend_returns_after_a_second(start_gateway, upstream):
    upstream.set("status", status=429, retry_after="inf")
    gateway = start_gateway([backend("only", upstream.url, ["m"])])
    response = gateway.chat()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    upstream.set("ok")
    time.sleep(1.1)
    assert gateway.chat().status_code == 200


def test_retry_after_beyond_the_cap_keeps_the_backend_out_for_the_cap_only(start_gateway, upstream):
    upstream.set("status", status=429, retry_after=86400)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_RETRY_AFTER_MAX_S="2")
    assert gateway.chat().headers["retry-after"] == "2"
    upstream.set("ok")
    assert gateway.chat().status_code == 429
    time.sleep(2.1)
    assert gateway.chat().status_code == 200


def test_client_disconnect_cancels_the_upstream_request_and_is_no_backend_failure(start_gateway, upstream):
    upstream.set("ok", chunks=50, chunk_delay=0.1)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_BREAKER_FAILURES="1")
    response = gateway.chat(stream=True)
    next(response.iter_content(64))
    response.close()
    wait_for(lambda: "client_disconnect" in gateway.metrics())
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_request_errors_total", reason="client_disconnect") == 1
    assert metric_value(exposition, "ai_requests_in_flight", backend="only") == 0
    assert gateway.health()["backends"][0]["breaker"] == "closed"
    assert gateway.chat().status_code == 200


def test_backend_closing_idle_keep_alive_connections_is_no_failure(start_gateway, upstream):
    upstream.set("ok", close_idle_after=0.1)
    gateway = start_gateway([backend("only", upstream.url, ["m"])], GATEWAY_BREAKER_FAILURES="1")
    for _ in range(3):
        assert gateway.chat().status_code == 200
        time.sleep(0.3)  # the backend closes the idle connection meanwhile
    assert len(upstream.received()) == 3
    assert metric_value(gateway.metrics(), "ai_failovers_total", backend="only") == 0
    assert gateway.health()["backends"][0]["breaker"] == "closed"


def test_bounded_attempts_stop_after_max_attempts(start_gateway, upstream, upstream2, start_upstream):
    third = start_upstream()
    for fake in (upstream, upstream2, third):
        fake.set("status", status=500)
    backends = [
        backend(f"b{i}", f.url, ["m"], priority=i) for i, f in enumerate((upstream, upstream2, third))
    ]
    gateway = start_gateway(backends, GATEWAY_MAX_ATTEMPTS="2")
    assert gateway.chat().status_code == 502
    assert third.received() == []


def test_backend_key_is_sent_upstream_and_client_key_is_not(start_gateway, upstream):
    gateway = start_gateway([backend("only", upstream.url, ["m"], api_key="backend-secret")])
    gateway.chat()
    sent = upstream.received()[0]["headers"]
    assert sent["authorization"] == "Bearer backend-secret"
    assert API_KEY not in json.dumps(sent)


def test_weights_split_traffic_within_a_priority(start_gateway, upstream, upstream2):
    gateway = start_gateway(
        [backend("heavy", upstream.url, ["m"], weight=9), backend("light", upstream2.url, ["m"], weight=1)]
    )
    served = [gateway.chat().headers["x-gateway-backend"] for _ in range(60)]
    assert 40 <= served.count("heavy") <= 59
    assert served.count("light") >= 1
