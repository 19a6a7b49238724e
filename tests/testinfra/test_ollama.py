"""Host checks for the ollama role: the service, its binding, its sandbox, its files, its API.

The models expected to be pulled come from the host's Ansible variable ``ollama_models`` (real
VMs through the dynamic inventory) or from LLM_CANARY_OLLAMA_MODELS (comma-separated, Molecule).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("ollama_host")

INSTALL_DIR = "/opt/ollama"
MODELS_DIR = "/var/lib/ollama/models"


@pytest.fixture
def ollama_api(server_address: Any, setting: Any) -> str:
    return f"http://{server_address('ollama')}:{setting('ollama_port')}"


@pytest.fixture
def expected_models(host: Any) -> list[str]:
    if host.backend.NAME == "ansible":
        names = host.ansible.get_variables().get("ollama_models", [])
    else:
        names = [n for n in os.environ.get("LLM_CANARY_OLLAMA_MODELS", "").split(",") if n]
    return [n if ":" in n.rsplit("/", 1)[-1] else f"{n}:latest" for n in names]


def unit_property(host: Any, name: str) -> str:
    return host.check_output(f"systemctl show ollama --property={name} --value")


def test_ollama_service_is_enabled_and_running(host: Any) -> None:
    service = host.service("ollama")
    assert service.is_enabled
    assert service.is_running


def test_ollama_listens_on_the_private_address_only(
    listening_addresses: Any, port_listeners: Any, setting: Any
) -> None:
    assert sorted(listening_addresses(setting("ollama_port"))) == port_listeners("ollama")


def test_ollama_runs_as_its_unprivileged_system_user(host: Any) -> None:
    user = host.user("ollama")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert unit_property(host, "User") == "ollama"
    assert unit_property(host, "NoNewPrivileges") == "yes"
    assert unit_property(host, "CapabilityBoundingSet") == ""


def test_ollama_unit_makes_the_system_read_only_except_its_data(host: Any) -> None:
    assert unit_property(host, "ProtectSystem") == "strict"
    assert unit_property(host, "ProtectHome") == "yes"
    assert set(unit_property(host, "ReadWritePaths").split()) == {"/var/lib/ollama", MODELS_DIR}


def test_ollama_environment_selects_cpu_or_gpu(host: Any, setting: Any) -> None:
    environment = unit_property(host, "Environment").split()
    assert f"OLLAMA_MODELS={MODELS_DIR}" in environment
    assert ("CUDA_VISIBLE_DEVICES=-1" in environment) is (not setting("ollama_enable_gpu"))
    assert (unit_property(host, "PrivateDevices") == "yes") is (not setting("ollama_enable_gpu"))


def test_ollama_gpu_unit_has_no_device_allow_list_that_would_shut_out_the_gpu(host: Any) -> None:
    # Any DeviceAllow= (ProtectClock= implies one on systemd < 253) makes the policy an allow-list
    # without /dev/nvidia*. The previous test ties PrivateDevices to ollama_enable_gpu.
    if unit_property(host, "PrivateDevices") == "yes":
        pytest.skip("CPU unit: PrivateDevices closes the devices on purpose")
    assert unit_property(host, "DevicePolicy") == "auto"
    assert unit_property(host, "DeviceAllow") == ""


def test_ollama_models_dir_belongs_to_the_service_and_is_private(host: Any) -> None:
    models = host.file(MODELS_DIR)
    assert models.is_directory
    assert models.user == "ollama"
    assert models.mode == 0o750


def test_ollama_binary_is_root_owned_and_linked_from_the_pinned_version(
    host: Any, http: Any, ollama_api: str
) -> None:
    current = host.file(f"{INSTALL_DIR}/current")
    version = http.get(f"{ollama_api}/api/version").json()["version"]
    assert current.is_symlink
    assert current.linked_to == f"{INSTALL_DIR}/{version}"
    binary = host.file(f"{INSTALL_DIR}/{version}/bin/ollama")
    assert binary.user == "root"
    assert not binary.mode & 0o022


def test_ollama_cli_reports_the_version_the_service_runs(host: Any, http: Any, ollama_api: str) -> None:
    served = http.get(f"{ollama_api}/api/version").json()["version"]
    assert host.check_output("ollama --version").endswith(served)


def test_ollama_configured_models_are_pulled(http: Any, ollama_api: str, expected_models: list[str]) -> None:
    if not expected_models:
        pytest.skip("no models configured")
    tags = http.get(f"{ollama_api}/api/tags")
    assert tags.status == 200
    assert set(expected_models) <= {m["name"] for m in tags.json()["models"]}


def test_ollama_list_shows_the_pulled_models(host: Any, ollama_api: str, expected_models: list[str]) -> None:
    if not expected_models:
        pytest.skip("no models configured")
    listed = host.check_output(f"OLLAMA_HOST={ollama_api} ollama list").splitlines()
    assert set(expected_models) <= {line.split()[0] for line in listed[1:]}


def test_ollama_models_are_stored_in_the_models_dir(host: Any, expected_models: list[str]) -> None:
    for name in expected_models:
        repo, tag = name.rsplit(":", 1)
        namespace, _, model = repo.rpartition("/")
        manifest = host.file(
            f"{MODELS_DIR}/manifests/registry.ollama.ai/{namespace or 'library'}/{model}/{tag}"
        )
        assert manifest.is_file
        assert manifest.user == "ollama"


def test_ollama_reports_running_models_for_the_exporter(http: Any, ollama_api: str) -> None:
    running = http.get(f"{ollama_api}/api/ps")
    assert running.status == 200
    assert isinstance(running.json()["models"], list)


def test_ollama_loads_models_into_gpu_memory(
    host: Any, http: Any, ollama_api: str, expected_models: list[str]
) -> None:
    """On a GPU host a loaded model sits in VRAM; Ollama's silent fallback reports size_vram 0."""
    if not host.file("/dev/nvidia0").exists:
        pytest.skip("no GPU on this host (/dev/nvidia0)")
    if not expected_models:
        pytest.skip("no models configured")
    model = expected_models[0]
    # A generate request without a prompt only loads the model.
    loaded = http.post(
        f"{ollama_api}/api/generate", {"model": model, "keep_alive": "1m", "stream": False}, timeout=600
    )
    assert loaded.status == 200, loaded.body
    running = {m["name"]: m for m in http.get(f"{ollama_api}/api/ps").json()["models"]}
    assert running[model]["size_vram"] > 0, running[model]
