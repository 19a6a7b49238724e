"""`make up`'s stack from a clean state to destroy, in the order a user lives it.

The tests run in file order and share one stack: bad input stops before anything is made; the
stack comes up and answers; a rerun changes nothing; the canary passes, fails naming its checks
while llama-server is stopped, and passes once it is back; destroy removes all of it and nothing
of the user's. This replaces any local stack of this checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time

import pytest
import requests
from conftest import ROOT, outputs, playbook, podman, recap_changed, run, stack_resources

CANARY = str(ROOT / "tools/deploy/ci/deploy_ollama_gcp.sh")


def _nothing_made() -> bool:
    return not any(stack_resources().values()) and not (ROOT / "outputs" / "local").exists()


def test_destroy_from_any_state_leaves_nothing(bystander):
    assert playbook("playbooks/destroy.yml").rc == 0
    assert _nothing_made()


def test_a_taken_port_stops_before_anything_is_made():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = playbook("site.yml", "-e", f"local_worker_port={port}")
    assert result.rc == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in result.flat
    assert "-e local_worker_port=PORT" in result.flat
    assert _nothing_made()


def test_missing_podman_stops_before_anything_is_made(tmp_path):
    # A PATH with every command of this machine but podman.
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in os.scandir(directory):
            if entry.name != "podman" and not (tmp_path / entry.name).exists():
                (tmp_path / entry.name).symlink_to(entry.path)
    venv_bin = os.path.dirname(shutil.which("ansible-playbook"))
    result = playbook("site.yml", env={"PATH": f"{venv_bin}:{tmp_path}"})
    assert result.rc == 2
    assert "podman is missing on this machine" in result.flat
    assert _nothing_made()


def test_an_ollama_archive_with_a_wrong_checksum_stops_before_anything_is_made(tmp_path):
    archive = tmp_path / "ollama-linux-amd64.tgz"
    archive.write_bytes(b"not the release")
    result = playbook(
        "site.yml", "-e", f"local_ollama_archive={archive}", "-e", "local_ollama_archive_sha256=" + "0" * 64
    )
    assert result.rc == 2
    assert "not local_ollama_archive_sha256=" + "0" * 64 in result.flat
    assert _nothing_made()


@pytest.fixture(scope="module")
def up():
    return playbook("site.yml")


@pytest.fixture(scope="module")
def rerun(up):
    return playbook("site.yml")


def test_up_answers_through_the_whole_path(up):
    result = up
    assert result.rc == 0, result.output[-4000:]
    assert "Skipping Ollama: its binary cannot be built here" in result.flat
    assert re.search(r"The model answered: \S", result.output)
    assert set(stack_resources()["containers"]) == {
        "llm-canary-llamacpp-1",
        "llm-canary-gateway",
        "llm-canary-worker",
    }


def test_up_writes_the_outputs_and_keeps_secrets_private():
    written = outputs()
    for key in ("worker_url", "gateway_url", "llamacpp_url", "model"):
        assert written[key], key
    assert written["llamacpp_vm_static_ip"] == "10.89.42.11"
    for key in ("jwt_secret_file", "gateway_api_key_file"):
        path = ROOT / written[key]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, key
        assert len(path.read_text().strip()) >= 32
    assert stat.S_IMODE((ROOT / "outputs/local").stat().st_mode) == 0o700


def test_up_prints_a_curl_that_gets_a_real_answer(up):
    command = re.search(r"^\s*(curl -s .*)$", up.output, re.MULTILINE).group(1)
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, check=True)
    assert '"choices"' in answer.stdout and '"content"' in answer.stdout


def test_no_secret_reaches_the_output(up, rerun):
    for key in ("jwt_secret_file", "gateway_api_key_file", "llamacpp_api_key_file"):
        secret = (ROOT / outputs()[key]).read_text().strip()
        assert secret not in up.output and secret not in rerun.output, key


def test_a_rerun_changes_nothing(rerun):
    assert rerun.rc == 0
    changed = recap_changed(rerun.output)
    assert changed and set(changed.values()) == {0}, changed


def test_the_canary_passes_on_a_healthy_stack():
    result = run(CANARY, env={"TARGET": "local"})
    assert result.rc == 0, result.output[-4000:]
    assert "canary passed" in result.output
    for report in ("test_llamacpp_server.xml", "test_stack.xml", "verdict.json"):
        assert (ROOT / "outputs/canary" / report).is_file(), report


def _llama_server(action: str) -> None:
    podman("exec", "llm-canary-llamacpp-1", "systemctl", action, "llama-server.service")


def test_the_canary_fails_naming_the_checks_while_llama_server_is_stopped():
    _llama_server("stop")
    try:
        result = run(CANARY, "-e", "canary_skip_deploy=true", env={"TARGET": "local"})
    finally:
        _llama_server("start")
    assert result.rc == 1, result.output[-4000:]
    failed = re.search(r"canary FAILED: (.*)", result.output).group(1)
    assert "test_llamacpp_server: test_health_is_ok" in failed
    assert "slo: availability" in failed


def test_the_canary_passes_again_once_llama_server_is_back():
    url = outputs()["llamacpp_url"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    result = run(CANARY, "-e", "canary_skip_deploy=true", env={"TARGET": "local"})
    assert result.rc == 0, result.output[-4000:]


def test_a_failed_deploy_is_the_canarys_exit_status_2():
    result = run(CANARY, "-e", "local_network_subnet=10.89.42.0/16", env={"TARGET": "local"})
    assert result.rc == 2
    assert "local_network_subnet must be an IPv4 /24" in result.flat


def test_destroy_removes_the_stack_and_nothing_else(bystander):
    result = run("make", "--no-print-directory", "destroy", "target=local", "SETUP_DONE=1")
    assert result.rc == 0, result.output[-4000:]
    assert _nothing_made()
    assert not (ROOT / "outputs/local.json").exists()
    assert bystander in podman("ps", "--all", "--format", "{{.Names}}")


@pytest.fixture(scope="module", autouse=True)
def _clean_up_after_a_failure():
    yield
    playbook("playbooks/destroy.yml")
