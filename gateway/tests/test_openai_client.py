"""The official openai SDK against the gateway in front of real llama-servers built from source."""

from __future__ import annotations

import openai
import pytest
from utils import API_KEY, backend, metric_value, wait_for


@pytest.fixture
def real_gateway(start_gateway, llama_smol, llama_tiny, llama_embed):
    return start_gateway(
        [
            backend("smol", llama_smol.url, ["smollm2"]),
            backend("tiny", llama_tiny.url, ["tiny"]),
            backend("embed", llama_embed.url, ["tiny-embed"]),
        ],
        GATEWAY_MODEL_ALIASES='{"default": "smollm2"}',
        GATEWAY_PROBE_INTERVAL_S="0.2",
    )


@pytest.fixture
def client(real_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_gateway.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def test_chat_completion_returns_a_real_answer(client):
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=8,
        temperature=0,
    )
    assert "paris" in answer.choices[0].message.content.lower()
    assert answer.usage.completion_tokens > 0


def test_streamed_chat_completion_arrives_in_order_and_complete(client):
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from 1 to 5."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1" in text and "2" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_alias_routes_to_its_model(client):
    answer = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.headers["x-gateway-backend"] == "smol"


def test_completions_endpoint_answers(client):
    answer = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=4)
    assert answer.usage.completion_tokens == 4


def test_embeddings_come_from_the_embeddings_server(client):
    answer = client.embeddings.create(model="tiny-embed", input=["hello", "world"])
    assert [len(d.embedding) for d in answer.data] == [64, 64]


def test_models_lists_every_routable_name(client):
    assert sorted(m.id for m in client.models.list()) == ["default", "smollm2", "tiny", "tiny-embed"]


def test_models_are_filtered_by_the_allowlist(start_gateway, llama_tiny):
    gateway = start_gateway(
        [backend("tiny", llama_tiny.url, ["tiny", "other"])], GATEWAY_ALLOWED_MODELS="tiny"
    )
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=API_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])


def test_wrong_key_raises_authentication_error(real_gateway):
    client = openai.OpenAI(base_url=real_gateway.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.body["code"] == "invalid_api_key"


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "model_not_found"


def test_malformed_request_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="tiny", messages=[])
    assert raised.value.body["param"] == "messages"


def test_stream_cut_raises_api_error_in_the_sdk(start_gateway, upstream):
    upstream.set("cut_after", chunks=3)
    gateway = start_gateway([backend("fake", upstream.url, ["m"])])
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=API_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="upstream stream broke"):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 3


def test_token_usage_and_latency_reach_the_metrics(client, real_gateway):
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=3)
    exposition = real_gateway.metrics()
    assert metric_value(exposition, "ai_tokens_total", model="tiny", direction="out") == 3
    assert metric_value(exposition, "ai_tokens_total", model="tiny", direction="in") > 0
    assert (
        metric_value(
            exposition, "ai_request_latency_seconds_count", model="tiny", backend="tiny", status_class="2xx"
        )
        == 1
    )


def test_model_loaded_and_memory_come_from_llama_server_reports(real_gateway):
    # the probe runs every 0.2 s
    wait_for(lambda: metric_value(real_gateway.metrics(), "ai_model_loaded", model="tiny"))
    exposition = real_gateway.metrics()
    assert metric_value(exposition, "ai_model_loaded", model="tiny", backend="tiny") == 1
    assert metric_value(exposition, "ai_backend_up", backend="tiny") == 1
    assert metric_value(exposition, "ai_memory_used_bytes", model="tiny", backend="tiny") > 100_000
