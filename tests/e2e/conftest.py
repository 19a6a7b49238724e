"""The local target end to end, driven as a user drives it: ansible-playbook and the canary's
wrapper from the project root, podman to look at (and break) what they made."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABEL = "label=llm-canary.stack=local"


@dataclass
class Run:
    rc: int
    output: str

    @property
    def flat(self) -> str:
        """The output with Ansible's line folding undone, for matching messages."""
        return " ".join(self.output.split())


def run(*argv: str, timeout: float = 1500, env: dict[str, str] | None = None) -> Run:
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout)


def playbook(path: str, *extra: str, env: dict[str, str] | None = None) -> Run:
    return run("ansible-playbook", path, "-e", "target=local", *extra, env=env)


def podman(*args: str) -> list[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=True, timeout=120)
    return result.stdout.split()


def stack_resources() -> dict[str, list[str]]:
    """Everything podman holds with the local stack's label."""
    return {
        "containers": podman("ps", "--all", "--filter", LABEL, "--format", "{{.Names}}"),
        "networks": podman("network", "ls", "--filter", LABEL, "--format", "{{.Name}}"),
        "images": podman("images", "--all", "--filter", LABEL, "--format", "{{.ID}}"),
    }


def outputs() -> dict:
    return json.loads((ROOT / "outputs" / "local.json").read_text())


def recap_changed(output: str) -> dict[str, int]:
    """changed=N of each host in the PLAY RECAP."""
    counts = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        if "changed=" in line:
            host = line.split(":", 1)[0].strip()
            counts[host] = int(line.split("changed=", 1)[1].split()[0])
    return counts


@pytest.fixture(scope="session")
def bystander():
    """A container of the user's, unrelated to the stack: destroy must leave it alone."""
    base = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.d/70-gateway.sh"), "--print-image"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    name = "llm-canary-e2e-bystander"
    subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
    podman(
        *("--runtime", "runc", "run", "--detach", "--name", name),
        *("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", base, "sleep", "infinity"),
    )
    yield name
    subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True, check=False)
