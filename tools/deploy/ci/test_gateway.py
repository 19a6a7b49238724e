"""Smoke tests of a Cloud Run gateway revision on its own URL (GCP: the canary revision's tag URL,
which takes no real traffic until these and the SLO verdict pass)."""

from __future__ import annotations

import pytest
from gateway_target import GatewayTarget


@pytest.fixture(scope="module")
def gateway() -> GatewayTarget:
    return GatewayTarget.from_env()


def test_health_is_ok(http, gateway):
    assert http.get(f"{gateway.base_url}/health").status_code == 200


def test_a_request_without_a_key_gets_401(http, gateway):
    answer = http.get(f"{gateway.base_url}/v1/models")
    assert answer.status_code == 401
    assert answer.json()["error"]["message"]


def test_models_are_listed(http, gateway):
    answer = http.get(f"{gateway.base_url}/v1/models", headers=gateway.headers)
    assert answer.status_code == 200
    assert answer.json()["data"]


def test_chat_gets_an_answer(http, gateway):
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    answer = http.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers=gateway.headers)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"].strip()
