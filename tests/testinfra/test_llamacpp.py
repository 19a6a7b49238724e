"""llama.cpp host checks (role llamacpp): the service, its sockets and files, and real answers."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("llamacpp_host")

PREFIX = "/opt/llama.cpp"
API_KEY_FILE = "/etc/llama.cpp/api-key"


@pytest.fixture
def api_key(host: Any) -> str | None:
    """The key the service was configured with, or None when it runs without one."""
    with host.sudo():
        key_file = host.file(API_KEY_FILE)
        if not key_file.exists:
            return None
        return key_file.content_string.strip()


@pytest.fixture
def required_api_key(api_key: str | None) -> str:
    """The configured key; tests that need one skip on a service without it."""
    if api_key is None:
        pytest.skip("the service runs without an API key")
    return api_key


@pytest.fixture
def base_url(private_address: str, setting) -> str:
    return f"http://{private_address}:{setting('llamacpp_port')}"


@pytest.fixture
def auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def test_service_is_enabled_and_running(host: Any) -> None:
    service = host.service("llama-server")
    assert service.is_enabled
    assert service.is_running


def test_service_runs_as_its_unprivileged_user(host: Any) -> None:
    users = host.check_output("ps -o user= -C llama-server").split()
    assert users and set(users) == {"llamacpp"}


def test_unit_is_hardened(host: Any) -> None:
    props = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show llama-server -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp"
        ).splitlines()
    )
    assert props == {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }


def test_listens_on_the_private_address_only(listening_addresses, private_address: str, setting) -> None:
    assert listening_addresses(setting("llamacpp_port")) == [private_address]


def test_current_links_to_a_versioned_install(host: Any) -> None:
    current = host.file(f"{PREFIX}/current")
    assert current.is_symlink
    target = current.linked_to
    assert target.startswith(f"{PREFIX}/b")
    binary = host.file(f"{target}/bin/llama-server")
    assert binary.user == "root" and binary.mode == 0o755


def test_model_is_readable_by_the_service_group_only(host: Any) -> None:
    model = host.check_output("systemctl show llama-server -p ExecStart").split("--model ")[1].split()[0]
    model_file = host.file(model)
    assert (model_file.user, model_file.group, model_file.mode) == ("root", "llamacpp", 0o640)


@pytest.mark.usefixtures("required_api_key")
def test_api_key_file_is_readable_by_the_service_group_only(host: Any) -> None:
    with host.sudo():
        key_file = host.file(API_KEY_FILE)
        assert (key_file.user, key_file.group, key_file.mode) == ("root", "llamacpp", 0o640)


def test_api_key_is_not_on_the_command_line(host: Any, required_api_key: str) -> None:
    assert required_api_key not in host.check_output("ps -o args= -C llama-server")


def test_health_answers_ok(http, base_url: str) -> None:
    response = http.get(f"{base_url}/health")
    assert response.status == 200
    assert response.json() == {"status": "ok"}


def test_models_lists_the_configured_name(http, base_url: str, auth: dict[str, str], setting) -> None:
    response = http.get(f"{base_url}/v1/models", headers=auth)
    assert response.status == 200
    assert [m["id"] for m in response.json()["data"]] == [setting("llamacpp_model_name")]


def test_chat_completion_returns_generated_text(http, base_url: str, auth: dict[str, str], setting) -> None:
    body = {
        "model": setting("llamacpp_model_name"),
        "messages": [{"role": "user", "content": "Name one colour of the rainbow."}],
        "max_tokens": 16,
        "temperature": 0,
        "seed": 1,
    }
    response = http.post(f"{base_url}/v1/chat/completions", body, headers=auth)
    assert response.status == 200
    reply = response.json()
    assert reply["choices"][0]["message"]["content"].strip()
    assert reply["usage"]["completion_tokens"] > 0


@pytest.mark.usefixtures("required_api_key")
def test_request_without_the_key_is_refused(http, base_url: str) -> None:
    response = http.get(f"{base_url}/v1/models")
    assert response.status == 401


def test_metrics_exports_llamacpp_series(http, base_url: str, auth: dict[str, str]) -> None:
    response = http.get(f"{base_url}/metrics", headers=auth)
    assert response.status == 200
    assert "llamacpp:prompt_tokens_total" in response.body
