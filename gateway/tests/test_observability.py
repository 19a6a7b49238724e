"""Request ids, the backend header, JSON logs without secrets, metrics per the contract, /health."""

from __future__ import annotations

import re
import time

import requests
from utils import API_KEY, Gateway, backend, llama_server, metric_value, sse_events, wait_for

PROBING = {"GATEWAY_PROBE_INTERVAL_S": "0.2"}


def test_request_id_is_passed_through(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])])
    response = gateway.chat(headers={"X-Request-Id": "client-chosen-42"})
    assert response.headers["x-request-id"] == "client-chosen-42"
    assert upstream.received()[0]["headers"]["x-request-id"] == "client-chosen-42"


def test_request_id_is_generated_when_absent_or_unusable(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])])
    plain = gateway.chat().headers["x-request-id"]
    odd = gateway.chat(headers={"X-Request-Id": "has spaces and {braces}"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", plain)
    assert re.fullmatch(r"[0-9a-f]{24}", odd)
    assert plain != odd


def test_streams_name_the_backend_and_request(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])])
    response = gateway.chat(stream=True, headers={"X-Request-Id": "s-1"})
    assert response.headers["x-gateway-backend"] == "fake"
    assert response.headers["x-request-id"] == "s-1"
    assert response.headers["content-type"].startswith("text/event-stream")


def test_logs_are_json_for_cloud_logging_without_keys_or_prompts(start_gateway, upstream):
    gateway = start_gateway(
        [backend("fake", upstream.url, ["m"], api_key="backend-secret")], GOOGLE_CLOUD_PROJECT="proj-1"
    )
    secret_prompt = "my-very-private-prompt"
    gateway.post(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": secret_prompt}]},
        headers={"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/1;o=1"},
    )
    gateway.stop()
    entries = gateway.log_entries()
    access = [e for e in entries if e["message"] == "request"]
    assert len(access) == 1
    assert access[0]["severity"] == "INFO"
    assert access[0]["status"] == 200
    assert (
        access[0]["logging.googleapis.com/trace"] == "projects/proj-1/traces/0af7651916cd43dd8448eb211c80319c"
    )
    raw = gateway.log()
    for secret in (API_KEY, "backend-secret", secret_prompt):
        assert secret not in raw


def test_gateway_refuses_to_start_without_keys_saying_why(start_gateway, upstream):
    gateway = Gateway([backend("fake", upstream.url, ["m"])], GATEWAY_API_KEYS="")
    try:
        gateway.start(upstream.log_path.parent)
    except RuntimeError as exc:
        assert "GATEWAY_API_KEYS" in str(exc)
        assert gateway.proc is not None and gateway.proc.returncode == 2
    else:
        raise AssertionError("the gateway started without keys")


def test_unauthenticated_mode_needs_the_explicit_switch(start_gateway, upstream):
    gateway = start_gateway(
        [backend("fake", upstream.url, ["m"])], GATEWAY_API_KEYS="", GATEWAY_ALLOW_UNAUTHENTICATED="true"
    )
    response = requests.get(gateway.url + "/v1/models", timeout=10)
    assert response.status_code == 200


def test_metrics_follow_the_contract(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])])
    # Read to the end: a client that drops the stream early is counted as a disconnect instead.
    assert sse_events(gateway.chat(stream=True))[-1] == "[DONE]"
    wait_for(lambda: "ai_request_latency_seconds_count{" in gateway.metrics())
    exposition = gateway.metrics()
    assert 'ai_request_latency_seconds_bucket{backend="fake",endpoint="/v1/chat/completions",le="2.0"' in (
        exposition.replace('model="m",', "").replace(',status_class="2xx"', "")
    )
    assert metric_value(exposition, "ai_request_latency_seconds_count", model="m", status_class="2xx") == 1
    assert metric_value(exposition, "ai_time_to_first_token_seconds_count", model="m", backend="fake") == 1
    assert metric_value(exposition, "ai_tokens_total", model="m", direction="out") == 20
    for name in (
        "ai_request_errors_total",
        "ai_model_loaded",
        "ai_memory_used_bytes",
        "ai_memory_total_bytes",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in exposition


def test_failed_requests_are_counted_by_reason(start_gateway, upstream, upstream2):
    upstream.set("status", status=500)
    gateway = start_gateway(
        [backend("a", upstream.url, ["m"], priority=0), backend("b", upstream2.url, ["m"], priority=1)]
    )
    gateway.chat()
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_request_errors_total", backend="a", reason="upstream_5xx") == 1
    assert metric_value(exposition, "ai_failovers_total", backend="a") == 1


def test_metrics_endpoint_can_be_switched_off(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])], GATEWAY_METRICS="false")
    assert requests.get(gateway.url + "/metrics", timeout=10).status_code == 404


def test_ollama_loaded_models_and_vram_come_from_api_ps(start_gateway, upstream):
    upstream.set("ok", loaded=["qwen2.5:0.5b"])
    gateway = start_gateway(
        [backend("gpu", upstream.url, ["qwen2.5:0.5b", "llama3.2"], kind="ollama")],
        GATEWAY_PROBE_INTERVAL_S="0.2",
    )
    wait_for(lambda: metric_value(gateway.metrics(), "ai_model_loaded", model="qwen2.5:0.5b") == 1)
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_model_loaded", model="llama3.2", backend="gpu") == 0
    assert metric_value(exposition, "ai_memory_used_bytes", model="qwen2.5:0.5b", backend="gpu") == 1500
    assert metric_value(exposition, "ai_memory_total_bytes", model="qwen2.5:0.5b", backend="gpu") == 2000
    assert upstream.received() == []  # probing never sent a generation request (which would load a model)


def test_health_is_200_with_backends_down_and_shows_their_state(start_gateway, upstream):
    upstream.set("ok", probe="down")
    gateway = start_gateway(
        [backend("down", upstream.url, ["m"])], GATEWAY_PROBE_INTERVAL_S="0.2", GATEWAY_BREAKER_FAILURES="1"
    )
    wait_for(lambda: gateway.health()["backends"][0]["up"] is False)
    state = gateway.health()["backends"][0]
    assert state["breaker"] == "open"
    assert metric_value(gateway.metrics(), "ai_backend_up", backend="down") == 0


def test_successful_probe_closes_the_breaker_after_cooldown(start_gateway, upstream):
    upstream.set("ok", probe="down")
    gateway = start_gateway(
        [backend("b", upstream.url, ["m"])],
        GATEWAY_PROBE_INTERVAL_S="0.2",
        GATEWAY_BREAKER_FAILURES="1",
        GATEWAY_BREAKER_COOLDOWN_S="0.5",
    )
    wait_for(lambda: gateway.health()["backends"][0]["breaker"] == "open")
    upstream.set("ok")
    wait_for(lambda: gateway.health()["backends"][0]["up"] is True)
    assert upstream.received() == []


def _probes(upstream) -> dict[str, int]:
    return requests.get(upstream.url + "/_probes", timeout=10).json()


def test_sleeping_llamacpp_reports_its_model_unloaded_and_its_memory_free(start_gateway, upstream):
    upstream.set("ok", sleeping=True)
    gateway = start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: _probes(upstream).get("/props", 0) >= 1)
    wait_for(lambda: 'ai_model_loaded{backend="cpu",model="m"}' in gateway.metrics())
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_model_loaded", model="m", backend="cpu") == 0
    assert metric_value(exposition, "ai_memory_used_bytes", model="m", backend="cpu") == 0
    assert metric_value(exposition, "ai_memory_total_bytes", model="m", backend="cpu") == 1234
    assert metric_value(exposition, "ai_backend_up", backend="cpu") == 1  # asleep is not down


def test_sleeping_llamacpp_is_never_asked_for_its_slots(start_gateway, upstream):
    upstream.set("ok", sleeping=True, total_slots=3)
    gateway = start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: _probes(upstream).get("/props", 0) >= 5)
    assert "/slots" not in _probes(upstream)  # it would wake the server and load the model
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_backend_slots", backend="cpu", state="idle") == 3
    assert metric_value(exposition, "ai_backend_slots", backend="cpu", state="busy") == 0


def test_llamacpp_slots_are_counted_busy_and_idle(start_gateway, upstream):
    upstream.set("ok", busy_slots=1, total_slots=3)
    gateway = start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: metric_value(gateway.metrics(), "ai_backend_slots", backend="cpu", state="busy") == 1)
    assert metric_value(gateway.metrics(), "ai_backend_slots", backend="cpu", state="idle") == 2


def test_idle_llamacpp_slots_are_read_once_so_the_server_may_fall_asleep(start_gateway, upstream):
    upstream.set("ok")
    start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: _probes(upstream).get("/props", 0) >= 5)
    assert _probes(upstream)["/slots"] == 1


def test_busy_llamacpp_slots_are_read_at_every_probe(start_gateway, upstream):
    upstream.set("ok", busy_slots=1)
    start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: _probes(upstream).get("/props", 0) >= 5)
    assert _probes(upstream)["/slots"] >= 4


def test_llamacpp_slots_are_read_while_the_gateway_has_requests_there(start_gateway, upstream):
    upstream.set("ok", chunk_delay=0.1)  # each stream takes 2 s
    gateway = start_gateway([backend("cpu", upstream.url, ["m"])], **PROBING)
    wait_for(lambda: _probes(upstream).get("/props", 0) >= 2)
    before = _probes(upstream)["/slots"]
    assert sse_events(gateway.chat(stream=True))[-1] == "[DONE]"
    assert _probes(upstream)["/slots"] - before >= 5


def test_real_llama_server_slots_reach_the_metrics(start_gateway, llama_tiny):
    gateway = start_gateway([backend("tiny", llama_tiny.url, ["tiny"])], **PROBING)
    wait_for(lambda: metric_value(gateway.metrics(), "ai_backend_slots", backend="tiny", state="idle") == 4)
    assert metric_value(gateway.metrics(), "ai_backend_slots", backend="tiny", state="busy") == 0


def test_real_llama_server_falls_asleep_while_probed_and_reports_unloaded(start_gateway, started, tiny_model):
    server = started(llama_server(tiny_model, "--sleep-idle-seconds", "1"))
    gateway = start_gateway([backend("cpu", server.url, ["tiny"])], **PROBING)
    wait_for(lambda: 'ai_model_loaded{backend="cpu",model="tiny"} 0.0' in gateway.metrics(), seconds=10)
    time.sleep(1)  # five more probes of the sleeping server
    assert "entering sleeping state" in server.log()
    assert "exiting sleeping state" not in server.log()  # no probe woke it (reloading the model)
    assert metric_value(gateway.metrics(), "ai_memory_used_bytes", model="tiny", backend="cpu") == 0
