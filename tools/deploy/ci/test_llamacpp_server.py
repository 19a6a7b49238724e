"""Smoke tests of the llama.cpp server (the seed's name): its own endpoints, called directly, on
its public port (TLS from the deployment's CA, every path behind its key: roles/model_proxy).

Run by playbooks/canary.yml with JUnit XML under outputs/; the target comes from CANARY_TARGET
(local, or the GCP project ID) through stack.Stack.
"""

from __future__ import annotations

import time

import openai
import pytest
import requests
from conftest import TimeoutSession

# The seed's latency objective: a short answer within 2 s.
LATENCY_OBJECTIVE_S = 2.0


@pytest.fixture(scope="module")
def base_url(stack) -> str:
    return stack.url("llamacpp_url")


@pytest.fixture(scope="module")
def key(stack) -> str:
    return stack.secret("llamacpp_api_key_file")


@pytest.fixture(scope="module")
def tls(stack) -> requests.Session:
    """A session that verifies the port against the deployment's CA only. trust_env off: requests
    would otherwise let $REQUESTS_CA_BUNDLE override the session's verify (requests#3829)."""
    with TimeoutSession() as session:
        session.verify = stack.model_ca_file
        session.trust_env = False
        yield session


@pytest.fixture(scope="module")
def client(base_url, key, stack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key=key,
        timeout=30.0,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(verify=stack.model_ssl_context()),
    )


def test_health_is_ok(tls, base_url, key):
    answer = tls.get(f"{base_url}/health", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"


def test_health_refuses_a_request_without_the_key(tls, base_url):
    assert tls.get(f"{base_url}/health").status_code == 401


def test_models_lists_the_served_model(client, stack):
    assert stack.model in [model.id for model in client.models.list().data]


def test_models_refuses_a_wrong_key(tls, base_url, key):
    answer = tls.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer x{key}"})
    assert answer.status_code == 401


def test_chat_answers(client, stack):
    answer = client.chat.completions.create(
        model=stack.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    assert answer.choices[0].message.content.strip()
    assert answer.usage.completion_tokens > 0


def test_chat_streams(client, stack):
    chunks = list(
        client.chat.completions.create(
            model=stack.model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            stream=True,
        )
    )
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_short_answer_is_within_the_latency_objective(client, stack):
    start = time.monotonic()
    client.chat.completions.create(
        model=stack.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
    )
    elapsed = time.monotonic() - start
    assert elapsed < LATENCY_OBJECTIVE_S, f"a short answer took {elapsed:.2f} s"
