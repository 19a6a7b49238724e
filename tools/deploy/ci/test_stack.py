"""Smoke tests of the whole path, client -> Worker (JWT, rate limit) -> gateway -> backend.

The official OpenAI SDK is the client, with a token minted from the deploy's HS256 secret.
"""

from __future__ import annotations

import time
import uuid

import openai
import pytest
from stack import mint_hs256

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


@pytest.fixture(scope="module")
def worker_url(stack) -> str:
    return stack.url("worker_url")


def _sub(purpose: str) -> str:
    """A sub of its own per test and run: the rate limit is counted per sub."""
    return f"canary-{purpose}-{uuid.uuid4().hex[:8]}"


def _client(worker_url: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{worker_url}/v1", api_key=token, timeout=30.0, max_retries=0)


def _latency_counts(http, gateway_url: str, model: str) -> float:
    """The gateway's ai_request_latency_seconds_count for `model`, summed over its other labels."""
    total = 0.0
    for line in http.get(f"{gateway_url}/metrics").text.splitlines():
        if line.startswith("ai_request_latency_seconds_count{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _model_loaded(http, gateway_url: str, model: str) -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in http.get(f"{gateway_url}/metrics").text.splitlines()
        if line.startswith("ai_model_loaded{") and f'model="{model}"' in line
    ]


def test_valid_token_gets_an_answer(worker_url, stack):
    answer = _client(worker_url, stack.token(_sub("chat"))).chat.completions.create(model=stack.model, **CHAT)
    assert answer.choices[0].message.content.strip()


def test_valid_token_gets_a_stream(worker_url, stack):
    stream = _client(worker_url, stack.token(_sub("stream"))).chat.completions.create(
        model=stack.model, stream=True, **CHAT
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip()


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(
            lambda stack: mint_hs256("not-the-secret-" * 3, {"sub": "x", "exp": time.time() + 60}),
            id="forged",
        ),
        pytest.param(lambda stack: stack.token("expired", ttl_s=-120), id="expired"),
        pytest.param(lambda stack: "", id="missing"),
    ],
)
def test_bad_token_gets_401(http, worker_url, stack, token_of):
    token = token_of(stack)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = http.get(f"{worker_url}/v1/models", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"]


def test_past_the_limit_gets_429_with_retry_after(http, worker_url, stack):
    headers = {"Authorization": f"Bearer {stack.token(_sub('limit'))}"}
    for _ in range(1000):
        answer = http.get(f"{worker_url}/v1/models", headers=headers)
        if answer.status_code != 200:
            break
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) > 0


def test_client_authorization_never_reaches_the_gateway(http, worker_url, stack):
    # The gateway refuses the client's token itself; through the Worker the same token is served,
    # so what reached the gateway was the Worker's key, not the client's Authorization.
    headers = {"Authorization": f"Bearer {stack.token(_sub('auth'))}"}
    assert http.get(f"{stack.url('gateway_url')}/v1/models", headers=headers).status_code == 401
    assert http.get(f"{worker_url}/v1/models", headers=headers).status_code == 200


def test_gateway_metrics_move(http, worker_url, stack):
    gateway_url = stack.url("gateway_url")
    before = _latency_counts(http, gateway_url, stack.model)
    client = _client(worker_url, stack.token(_sub("metrics")))
    for _ in range(3):
        client.chat.completions.create(model=stack.model, **CHAT)
    assert _latency_counts(http, gateway_url, stack.model) >= before + 3
    assert _model_loaded(http, gateway_url, stack.model) == [1.0]
