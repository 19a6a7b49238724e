"""GET /v1/models merged from the configuration and the backends' own listings, and routing to match.

The llama.cpp cases run against real llama-servers built from the pinned source; Ollama and other
OpenAI-compatible servers are the fault upstream's fakes of their listing endpoints.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from utils import HTTP_TIMEOUT, backend, llama_server, metric_value, wait_for

PROBING = {"GATEWAY_PROBE_INTERVAL_S": "0.2"}


def listing(gateway) -> dict[str, str]:
    """/v1/models as {id: owned_by}, in the order served."""
    response = requests.get(gateway.url + "/v1/models", headers=gateway.headers, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    return {m["id"]: m["owned_by"] for m in response.json()["data"]}


def probes(upstream) -> dict[str, int]:
    """How often the gateway read each probe path of the fault upstream."""
    return requests.get(upstream.url + "/_probes", timeout=HTTP_TIMEOUT).json()


def wait_listed(gateway, name: str) -> dict[str, str]:
    wait_for(lambda: name in listing(gateway))
    return listing(gateway)


def wait_for_body(gateway, name: str) -> dict[str, Any]:
    wait_listed(gateway, name)
    return requests.get(gateway.url + "/v1/models", headers=gateway.headers, timeout=HTTP_TIMEOUT).json()


@pytest.fixture
def llama_aliased(started, tiny_model):
    """A real llama-server started with --alias: it serves under the names it lists."""
    return started(llama_server(tiny_model, "--alias", "tiny-a,tiny-b"))


def test_llamacpp_aliases_are_listed_beside_the_configured_names(start_gateway, llama_aliased):
    gateway = start_gateway(
        [backend("cpu", llama_aliased.url, ["tiny"])], GATEWAY_MODEL_ALIASES='{"small": "tiny"}', **PROBING
    )
    assert wait_listed(gateway, "tiny-b") == {
        "small": "llm-canary",
        "tiny": "llamacpp",
        "tiny-a": "llamacpp",
        "tiny-b": "llamacpp",
    }


def test_llamacpp_model_path_is_not_listed(start_gateway, llama_tiny):
    gateway = start_gateway([backend("cpu", llama_tiny.url, ["tiny"])], **PROBING)
    wait_for(lambda: metric_value(gateway.metrics(), "ai_model_loaded", model="tiny", backend="cpu") == 1)
    assert listing(gateway) == {"tiny": "llamacpp"}


def test_every_listed_name_routes_to_a_backend_that_serves_it(start_gateway, llama_aliased):
    gateway = start_gateway([backend("cpu", llama_aliased.url, ["tiny"])], **PROBING)
    for name in wait_listed(gateway, "tiny-b"):
        response = gateway.chat(model=name, max_tokens=2)
        assert response.status_code == 200, (name, response.text)
        assert response.headers["x-gateway-backend"] == "cpu"


def test_ollama_models_it_has_are_listed_loaded_or_not(start_gateway, upstream):
    upstream.set("ok", loaded=["qwen2.5:0.5b"], available=["qwen2.5:0.5b", "llama3.2:latest", "phi3:mini"])
    gateway = start_gateway([backend("gpu", upstream.url, ["qwen2.5:0.5b"], kind="ollama")], **PROBING)
    assert wait_listed(gateway, "phi3:mini") == {
        "llama3.2:latest": "ollama",
        "phi3:mini": "ollama",
        "qwen2.5:0.5b": "ollama",
    }
    exposition = gateway.metrics()
    assert metric_value(exposition, "ai_model_loaded", model="phi3:mini", backend="gpu") == 0
    assert 'ai_model_loaded{backend="gpu",model="phi3:mini"} 0.0' in exposition  # present, not absent


def test_ollama_latest_tag_is_listed_under_the_configured_name(start_gateway, upstream):
    upstream.set("ok", available=["llama3.2:latest"])
    gateway = start_gateway([backend("gpu", upstream.url, ["llama3.2"], kind="ollama")], **PROBING)
    wait_for(lambda: probes(upstream).get("/api/tags", 0) >= 2)
    assert listing(gateway) == {"llama3.2": "ollama"}


def test_openai_kind_listing_is_merged(start_gateway, upstream):
    upstream.set("ok", model_ids=["gpt-x", "gpt-y"])
    gateway = start_gateway([backend("api", upstream.url, ["m"], kind="openai")], **PROBING)
    assert wait_listed(gateway, "gpt-y") == {"gpt-x": "openai", "gpt-y": "openai", "m": "openai"}


def test_a_name_listed_by_two_backends_appears_once(start_gateway, upstream, upstream2):
    upstream.set("ok", model_ids=["shared"])
    upstream2.set("ok", model_ids=["shared"])
    gateway = start_gateway(
        [
            backend("a", upstream.url, ["m"], kind="openai"),
            backend("b", upstream2.url, ["n"], kind="openai"),
        ],
        **PROBING,
    )
    response = wait_for_body(gateway, "shared")
    assert [m["id"] for m in response["data"]] == ["m", "n", "shared"]


def test_listed_names_are_filtered_by_the_allowlist(start_gateway, upstream):
    upstream.set("ok", model_ids=["kept", "hidden"])
    gateway = start_gateway(
        [backend("api", upstream.url, ["m"], kind="openai")], GATEWAY_ALLOWED_MODELS="m,kept", **PROBING
    )
    assert wait_listed(gateway, "kept") == {"kept": "openai", "m": "openai"}
    assert gateway.chat(model="hidden").status_code == 403


def test_configured_backend_is_tried_before_one_that_only_lists_the_model(start_gateway, upstream, upstream2):
    upstream2.set("ok", model_ids=["m"])
    gateway = start_gateway(
        [
            backend("configured", upstream.url, ["m"], kind="openai", weight=1),
            backend("listing", upstream2.url, ["other"], kind="openai", weight=1000),
        ],
        **PROBING,
    )
    wait_for(lambda: probes(upstream2).get("/v1/models", 0) >= 1)
    served = {gateway.chat().headers["x-gateway-backend"] for _ in range(10)}
    assert served == {"configured"}


def test_a_backend_that_only_lists_the_model_takes_over_when_the_configured_one_fails(
    start_gateway, upstream, upstream2
):
    upstream.set("status", status=500)
    upstream2.set("ok", model_ids=["m"])
    gateway = start_gateway(
        [
            backend("configured", upstream.url, ["m"], kind="openai"),
            backend("listing", upstream2.url, ["other"], kind="openai"),
        ],
        **PROBING,
    )
    wait_for(lambda: probes(upstream2).get("/v1/models", 0) >= 1)
    response = gateway.chat()
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "listing"


def test_a_name_no_longer_listed_leaves_the_listing_routing_and_metrics(start_gateway, upstream):
    upstream.set("ok", model_ids=["old"])
    gateway = start_gateway([backend("api", upstream.url, ["m"], kind="openai")], **PROBING)
    wait_listed(gateway, "old")
    upstream.set("ok", model_ids=["new"])
    wait_listed(gateway, "new")
    assert "old" not in listing(gateway)
    assert gateway.chat(model="old").status_code == 404
    assert 'model="old"' not in gateway.metrics()


def test_listing_is_kept_while_the_backend_is_unreachable(start_gateway, upstream):
    upstream.set("ok", model_ids=["listed"])
    gateway = start_gateway([backend("api", upstream.url, ["m"], kind="openai")], **PROBING)
    wait_listed(gateway, "listed")
    upstream.stop()
    wait_for(lambda: gateway.health()["backends"][0]["up"] is False)
    assert listing(gateway) == {"listed": "openai", "m": "openai"}


def test_unusable_listed_names_are_ignored(start_gateway, upstream):
    upstream.set("ok", model_ids=["fine", "x" * 300, "tab\there", ""])
    gateway = start_gateway([backend("api", upstream.url, ["m"], kind="openai")], **PROBING)
    assert wait_listed(gateway, "fine") == {"fine": "openai", "m": "openai"}
