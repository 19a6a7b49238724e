"""ai-exporter host checks (role ai_exporter): the service, its socket and files, and metrics
that tell the truth about the runtimes in this host's groups."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

CONFIG = "/etc/ai-exporter/config.json"


@pytest.fixture
def metrics(http, private_address: str, setting) -> dict[str, list[tuple[dict[str, str], float]]]:
    """One scrape: metric name -> [(labels, value)]."""
    response = http.get(f"http://{private_address}:{setting('ai_exporter_port')}/metrics")
    assert response.status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_service_is_enabled_and_running(host: Any) -> None:
    service = host.service("ai-exporter")
    assert service.is_enabled
    assert service.is_running


def test_service_runs_as_its_unprivileged_user(host: Any) -> None:
    main_pid = host.check_output("systemctl show --property MainPID --value ai-exporter")
    assert host.check_output(f"ps -o user= -p {main_pid}") == "ai-exporter"


def test_listens_on_the_private_address_only(listening_addresses, private_address: str, setting) -> None:
    assert listening_addresses(setting("ai_exporter_port")) == [private_address]


def test_configuration_is_readable_by_the_service_only(host: Any) -> None:
    with host.sudo():
        config = host.file(CONFIG)
        assert (config.user, config.group, config.mode) == ("root", "ai-exporter", 0o640)


def test_memory_is_reported_for_the_gpu_or_the_host(host: Any, metrics) -> None:
    expected = "gpu0" if host.file("/dev/nvidiactl").exists else "host"
    used = dict((labels["device"], value) for labels, value in metrics["ai_memory_used_bytes"])
    total = dict((labels["device"], value) for labels, value in metrics["ai_memory_total_bytes"])
    assert expected in total
    assert 0 < used[expected] <= total[expected]


def test_llamacpp_model_is_reported_loaded(host_groups: set[str], metrics, setting) -> None:
    if "llamacpp" not in host_groups:
        pytest.skip("host is not in group 'llamacpp'")
    loaded = {
        labels["model"]: value
        for labels, value in metrics["ai_model_loaded"]
        if labels["backend"] == "llamacpp"
    }
    assert loaded == {setting("llamacpp_model_name"): 1}


def test_ollama_models_are_reported_as_ollama_reports_them(
    host_groups: set[str], metrics, http, server_address, setting
) -> None:
    if "ollama" not in host_groups:
        pytest.skip("host is not in group 'ollama'")
    api = f"http://{server_address('ollama')}:{setting('ollama_port')}"
    pulled = {m["name"] for m in http.get(f"{api}/api/tags").json()["models"]}
    running = {m["name"] for m in http.get(f"{api}/api/ps").json()["models"]}
    assert pulled, "Ollama has no models pulled"
    up = {labels["backend"]: value for labels, value in metrics["ai_runtime_up"]}
    loaded = {
        labels["model"]: value
        for labels, value in metrics["ai_model_loaded"]
        if labels["backend"] == "ollama"
    }
    assert up["ollama"] == 1
    assert {name: value for name, value in loaded.items() if name in pulled | running} == {
        name: (1 if name in running else 0) for name in pulled | running
    }
