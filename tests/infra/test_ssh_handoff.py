"""site.yml against a fake GCE whose instances boot: real systemd hosts in rootful podman that take
SSH only after a while, with the instance metadata's ssh-keys installed as GCE's guest agent does.

From the first API call through the SSH handoff to the host roles and the testinfra host checks
(run through the dynamic inventory the play wrote), then a second run that changes nothing. GPU
paths stay off (no Ollama VM; llama.cpp from the archive of the llama-server `make setup` built).
Skipped where podman, the test image or that build are missing (`make setup` makes them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, ROOT, Cloud

from tests.fakes.gcp._hosts import PodmanHosts

LLAMA_SERVER = ROOT / "build" / "llama.cpp" / "bin" / "llama-server"
MODEL = ROOT / "build" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
VM = "llm-canary-llamacpp-1"
SSH_DELAY_S = 8.0
# llama-server's key on the VM: the host checks exercise it; no log may show it.
API_KEY = "fake-gce-" + uuid.uuid4().hex
_RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _pin(name: str) -> str:
    text = (ROOT / "scripts" / "pins.sh").read_text()
    found = re.search(rf"^{name}=(\S+)$", text, re.M)
    assert found is not None, name
    return found.group(1)


def _test_image() -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.d/50-test-image.sh"), "--print-image"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def _missing() -> str:
    if shutil.which("podman") is None:
        return "podman is not installed"
    image = _test_image()
    if not image or subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
        return f"the test image {image or '?'} is not built (make setup)"
    if not LLAMA_SERVER.exists() or not MODEL.exists():
        return "the llama-server build or SmolLM2 is missing (make setup)"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "ready")


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {host: {ok, changed, unreachable, failed}}."""
    return {
        m.group(1): dict(
            zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:]), strict=True)
        )
        for m in _RECAP.finditer(output)
    }


def said(output: str) -> str:
    return " ".join(output.split())


class Gce:
    """A fake GCP whose instances boot (PodmanHosts), and site.yml runs against it."""

    def __init__(self, workdir: Path, ssh_delay_s: float = SSH_DELAY_S) -> None:
        cache = Path.home() / ".cache" / "llm-canary"
        self.hosts = PodmanHosts(
            run_id=uuid.uuid4().hex[:8],
            image=_test_image(),
            workdir=workdir,
            ssh_delay_s=ssh_delay_s,
            # Debian's packages from the caches `make setup` and the local target share.
            extra_args=[
                "--volume",
                f"{cache}/apt-archives:/var/cache/apt/archives",
                "--volume",
                f"{cache}/apt-lists:/var/lib/apt/lists",
            ],
        )
        self.hosts.start()
        self.cloud = Cloud(workdir)
        self.cloud.fake.compute_state.hosts = self.hosts
        self.cloud.fake.compute_state.external_ip_prefix = self.hosts.external_ip_prefix
        self.workdir = workdir
        self.vars_file = workdir / "hosts-vars.json"
        self.vars_file.write_text(json.dumps(self._host_variables()))

    def _host_variables(self) -> dict[str, Any]:
        archive = self.workdir / "llama-server-b11312-setup.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(LLAMA_SERVER, arcname="bin/llama-server", filter=_root_owned)
        digest = subprocess.run(["sha256sum", str(archive)], capture_output=True, text=True, check=True)
        return {
            "enable_ollama_vm": False,
            "enable_gateway_service": False,
            "llamacpp_install_method": "archive",
            "llamacpp_archive": str(archive),
            "llamacpp_archive_sha256": digest.stdout.split()[0],
            "llamacpp_model_src": str(MODEL),
            "llamacpp_model_sha256": _pin("SMOLLM2_GGUF_SHA256"),
            "llamacpp_model_name": "SmolLM2-135M-Instruct",
            "llamacpp_ctx_size": 2048,
            "llamacpp_threads": 2,
            "llamacpp_api_key": API_KEY,
        }

    def run(self, playbook: str, *extra: str, timeout: int = 900, **variables: Any) -> tuple[int, str]:
        """ansible-playbook as Cloud.play runs it, with the host variables and a longer timeout."""
        base = {
            "project_id": PROJECT,
            "fly_egress_cidrs": ["203.0.113.7/32"],
            "ops_allowed_cidrs": ["198.51.100.4/32"],
            "infra_outputs_dir": str(self.cloud.outputs_dir),
        }
        argv = [
            "ansible-playbook",
            playbook,
            "-e",
            f"@{self.vars_file}",
            "-e",
            json.dumps(base | variables),
            *extra,
        ]
        done = subprocess.run(
            argv, cwd=ROOT, env=self.cloud.env, capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout + done.stderr

    @property
    def ssh_dir(self) -> Path:
        return self.cloud.outputs_dir / PROJECT / "ssh"

    def stop(self) -> None:
        try:
            self.cloud.stop()
        finally:
            self.hosts.close()
            left = subprocess.run(
                ["podman", "ps", "--all", "--filter", f"label={self.hosts.label}", "--format", "{{.Names}}"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert left.stdout.strip() == "", left.stdout


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


@pytest.fixture
def gce(tmp_path: Path) -> Iterator[Gce]:
    made = Gce(tmp_path)
    yield made
    made.stop()


def test_site_runs_from_the_first_api_call_through_ssh_to_the_host_checks_and_reruns_unchanged(
    gce: Gce,
) -> None:
    started = time.monotonic()
    rc, output = gce.run("site.yml")
    first = time.monotonic() - started
    assert rc == 0, output[-6000:]
    hosts = recap(output)
    assert hosts[VM]["changed"] > 0 and hosts[VM]["failed"] == 0, hosts
    assert gce.cloud.fake.token not in output and API_KEY not in output

    # The VM took SSH only after the guest agent ran, and Ansible waited for it.
    events = {(event, name): at for event, name, at in gce.hosts.events}
    assert events[("ssh-open", VM)] - events[("booted", VM)] >= SSH_DELAY_S
    assert "Wait until Ansible can log in" in output
    # The key went in as GCE expects it: ssh-keys = USER:KEY, the project's key pair.
    vm = gce.cloud.fake.resources("instances")[VM]
    items = {i["key"]: i["value"] for i in vm["metadata"]["items"]}
    public_key = (gce.ssh_dir / "id_ed25519.pub").read_text().strip()
    assert items["ssh-keys"] == f"llm-canary:{public_key}"
    assert oct((gce.ssh_dir / "id_ed25519").stat().st_mode & 0o777) == "0o600"
    # The host key was learned on first contact, for the static IP the fake reported.
    address = vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert address.startswith(gce.hosts.external_ip_prefix)
    learned = subprocess.run(
        ["ssh-keygen", "-F", address, "-f", str(gce.ssh_dir / "known_hosts")],
        capture_output=True,
        check=False,
    )
    assert learned.returncode == 0

    # The dynamic inventory the play wrote finds the VM with the same login.
    inventory = gce.cloud.outputs_dir / f"{PROJECT}.gcp_compute.yml"
    listed = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--host", VM],
        cwd=ROOT,
        env=gce.cloud.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    hostvars = {
        k: v.get("__ansible_unsafe", v) if isinstance(v, dict) else v
        for k, v in json.loads(listed.stdout).items()
    }
    assert hostvars["ansible_host"] == address and hostvars["ansible_user"] == "llm-canary"
    assert hostvars["ansible_ssh_private_key_file"] == str(gce.ssh_dir / "id_ed25519")

    # The host checks, over SSH as Ansible reached the VM: its user, the project's key, its known_hosts.
    # (testinfra's ansible:// backend cannot read this inventory under ansible-core 2.19: values
    # from inventory plugins come back wrapped as {"__ansible_unsafe": ...}.)
    ssh_config = gce.workdir / "ssh_config"
    ssh_config.write_text(
        f"Host {address}\n  UserKnownHostsFile {gce.ssh_dir}/known_hosts\n"
        "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n"
    )
    checks = subprocess.run(
        [
            str(Path(shutil.which("pytest") or "pytest")),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            # Logged in as the guest agent's user, as on a real VM: root's checks go through sudo.
            "--sudo",
            f"--hosts=ssh://llm-canary@{address}",
            f"--ssh-identity-file={gce.ssh_dir / 'id_ed25519'}",
            f"--ssh-config={ssh_config}",
            "tests/testinfra/test_llamacpp.py",
            "tests/testinfra/test_ai_exporter.py",
        ],
        cwd=ROOT,
        env={**gce.cloud.env, "LLM_CANARY_HOST_GROUPS": "llamacpp"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout

    rerun_rc, rerun = gce.run("site.yml")
    assert rerun_rc == 0, rerun[-6000:]
    assert {host: counts["changed"] for host, counts in recap(rerun).items()} == {"localhost": 0, VM: 0}, (
        rerun[-6000:]
    )
    print(f"first run {first:.0f} s; host checks: {checks.stdout.strip().splitlines()[-1]}")


def test_recreated_vm_gets_its_new_host_key_accepted_and_the_old_one_forgotten(gce: Gce) -> None:
    rc, output = gce.run("tests/infra/ssh_handoff.yml")
    assert rc == 0, output[-4000:]
    known = gce.ssh_dir / "known_hosts"
    before = known.read_text()
    # Resized by hand; the next run recreates it on the same static IP, as a new host.
    vm = gce.cloud.fake.resources("instances")[VM]
    vm["machineType"] = vm["machineType"].replace("e2-standard-4", "e2-standard-16")
    rc, output = gce.run("tests/infra/ssh_handoff.yml", infra_recreate_on_drift=True)
    assert rc == 0, output[-4000:]
    assert "Forget the old host key" in output
    after = known.read_text()
    assert after != before and len(after.splitlines()) == len(before.splitlines())
    assert [e for e, name, _ in gce.hosts.events if name == VM].count("booted") == 2


def test_vm_that_never_takes_ssh_fails_saying_what_to_check(tmp_path: Path) -> None:
    slow = Gce(tmp_path, ssh_delay_s=600)
    try:
        rc, output = slow.run("site.yml", infra_ssh_timeout=5)
        text = said(output)
        assert rc != 0
        assert f"{VM} did not take SSH as llm-canary at" in text
        assert "within infra_ssh_timeout=5s" in text
        assert "ops_allowed_cidrs (198.51.100.4/32)" in text and "get-serial-port-output" in text
    finally:
        slow.stop()
