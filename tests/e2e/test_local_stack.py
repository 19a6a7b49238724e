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
        "llm-canary-prometheus",
    }


def test_up_writes_the_outputs_and_keeps_secrets_private():
    written = outputs()
    for key in ("worker_url", "gateway_url", "llamacpp_url", "prometheus_url", "model", "model_ca_file"):
        assert written[key], key
    assert written["llamacpp_vm_static_ip"] == "10.89.42.11"
    assert written["llamacpp_url"] == "https://10.89.42.11:8080"
    for key in ("jwt_secret_file", "gateway_api_key_file", "llamacpp_api_key_file"):
        path = ROOT / written[key]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, key
        assert len(path.read_text().strip()) >= 32
    for directory in ("outputs/local", "outputs/local/credentials"):
        assert stat.S_IMODE((ROOT / directory).stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((ROOT / "outputs/local/credentials/ca.key").stat().st_mode) == 0o600


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_model_port_answers_only_over_tls_with_its_key():
    written = outputs()
    url, key = written["llamacpp_url"], (ROOT / written["llamacpp_api_key_file"]).read_text().strip()
    ca = str(ROOT / written["model_ca_file"])
    assert requests.get(f"{url}/v1/models", verify=ca, timeout=10).status_code == 401
    assert requests.get(f"{url}/health", verify=ca, timeout=10).status_code == 401
    wrong = requests.get(f"{url}/v1/models", verify=ca, timeout=10, headers=_bearer("wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    right = requests.get(f"{url}/v1/models", verify=ca, timeout=10, headers=_bearer(key))
    assert right.status_code == 200 and written["model"] in [m["id"] for m in right.json()["data"]]
    # Not trusted without the deployment's CA, and no plain-HTTP answer from the model.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/health", timeout=10)
    plain = requests.get(url.replace("https://", "http://") + "/v1/models", timeout=10)
    assert plain.status_code == 400 and "data" not in plain.text


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


def _backends_up() -> bool:
    """llama.cpp answers its /health and the gateway has taken it back (its probe saw it)."""
    try:
        written = outputs()
        llama = (
            requests.get(
                f"{written['llamacpp_url']}/health",
                timeout=5,
                verify=str(ROOT / written["model_ca_file"]),
                headers=_bearer((ROOT / written["llamacpp_api_key_file"]).read_text().strip()),
            ).status_code
            == 200
        )
        gateway = requests.get(f"{outputs()['gateway_url']}/health", timeout=5).json()
    except requests.RequestException:
        return False
    return llama and all(backend["up"] for backend in gateway["backends"])


def test_the_canary_passes_again_once_llama_server_is_back():
    _wait_for("llama.cpp back in the gateway", _backends_up, timeout=120)
    result = run(CANARY, "-e", "canary_skip_deploy=true", env={"TARGET": "local"})
    assert result.rc == 0, result.output[-4000:]


def _prometheus(path: str) -> dict:
    answer = requests.get(f"{outputs()['prometheus_url']}{path}", timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]


def _wait_for(what: str, condition, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_prometheus_scrapes_every_part_of_the_stack():
    def all_up() -> bool:
        targets = _prometheus("/api/v1/targets?state=active")["activeTargets"]
        return {(t["labels"]["job"], t["health"]) for t in targets} == {
            ("gateway", "up"),
            ("llamacpp", "up"),
            ("ai_exporter", "up"),
        }

    _wait_for("every target up", all_up, timeout=60)
    assert _prometheus("/api/v1/rules?type=alert")["groups"], "no alert rules loaded"


def _model_alert_states() -> set[str]:
    return {
        alert["state"]
        for alert in _prometheus("/api/v1/alerts")["alerts"]
        if alert["labels"]["alertname"] == "LLMModelNotLoaded"
    }


def test_the_model_not_loaded_alert_fires_while_llama_server_is_stopped_and_resolves():
    # The rules with every for: at 20 s (a test-only override), so pending and firing both show.
    assert playbook("site.yml", "-e", "local_prometheus_alert_for=20s").rc == 0
    _llama_server("stop")
    try:
        _wait_for("LLMModelNotLoaded pending", lambda: "pending" in _model_alert_states())
        _wait_for("LLMModelNotLoaded firing", lambda: "firing" in _model_alert_states())
    finally:
        _llama_server("start")
    _wait_for("LLMModelNotLoaded resolved", lambda: not _model_alert_states())


def _runbook_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "docs/runbook.md").read_text(), re.DOTALL)


def test_every_runbook_command_runs_on_the_stack():
    blocks = _runbook_commands()
    assert len(blocks) >= 10
    for block in blocks:
        result = subprocess.run(
            ["bash", "-e", "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, (
            f"{block}\n--- exit {result.returncode}:\n{result.stdout}{result.stderr}"
        )


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
