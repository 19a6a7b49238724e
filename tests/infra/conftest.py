"""Fixtures that run the real playbooks (ansible-playbook) against the fake GCP API."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fakes.gcp import FakeGcp, RunningFake  # noqa: E402 (needs the path above)

PROJECT = "canary-test"
FLY = "203.0.113.7/32"
OPS = "198.51.100.4/32"
# Someone else's binding on the same role the VMs get: the play must leave it exactly as it is.
CONDITIONAL_BINDING = {
    "role": "roles/logging.logWriter",
    "members": ["user:auditor@example.com"],
    "condition": {"title": "until-2027", "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")'},
}
_RECAP = re.compile(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")


@dataclass(frozen=True)
class PlayResult:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        return sum(int(m.group(2)) for m in _RECAP.finditer(self.output))


class Cloud:
    """A fake GCP (fresh with one existing project, or a copy of a snapshot), and a way to run
    plays against it."""

    def __init__(self, workdir: Path, snapshot: FakeGcp | None = None, new_project: bool = False) -> None:
        if snapshot is None:
            self.fake = FakeGcp()
            if not new_project:
                project = self.fake.platform.add_project(PROJECT)
                project.policy["bindings"].append(copy.deepcopy(CONDITIONAL_BINDING))
        else:
            self.fake = FakeGcp(
                compute_state=copy.deepcopy(snapshot.compute_state), platform=copy.deepcopy(snapshot.platform)
            )
        self.running = RunningFake(self.fake, workdir)
        self.outputs_dir = workdir / "outputs"
        self.env = {
            **os.environ,
            **self.running.client_environment(),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        }
        # The caller's own project and Cloudflare account must not leak into a run against the fake.
        for name in ("GCP_PROJECT", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"):
            self.env.pop(name, None)

    def play(self, playbook: str, *extra: str, check: bool = False, **variables: Any) -> PlayResult:
        base = {
            "project_id": PROJECT,
            "fly_egress_cidrs": [FLY],
            "ops_allowed_cidrs": [OPS],
            "infra_outputs_dir": str(self.outputs_dir),
        }
        argv = ["ansible-playbook", playbook, "-e", json.dumps(base | variables), *extra]
        if check:
            argv.append("--check")
        done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        return PlayResult(done.returncode, done.stdout + done.stderr)

    def apply(self, *extra: str, **variables: Any) -> PlayResult:
        result = self.play("playbooks/infra.yml", *extra, **variables)
        assert result.rc == 0, result.output[-4000:]
        return result

    def outputs(self) -> dict[str, Any]:
        return json.loads((self.outputs_dir / f"{PROJECT}.json").read_text())

    def stop(self) -> None:
        self.running.stop()
        assert not self.fake.violations, self.fake.violations


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """A fresh fake per test; any request that broke the discovery contract fails the test."""
    cloud = Cloud(tmp_path)
    yield cloud
    cloud.stop()


@dataclass(frozen=True)
class Deployment:
    cloud: Cloud
    first: PlayResult
    second: PlayResult
    mutating_after_first: int


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One fresh apply with the defaults, then a second run, shared by the read-only assertions."""
    cloud = Cloud(tmp_path_factory.mktemp("deployed"))
    first = cloud.play("tests/infra/deploy_and_list_hosts.yml")
    assert first.rc == 0, first.output[-4000:]
    mutating_after_first = len(cloud.fake.mutating_requests())
    second = cloud.play("tests/infra/deploy_and_list_hosts.yml")
    assert second.rc == 0, second.output[-4000:]
    yield Deployment(cloud, first, second, mutating_after_first)
    cloud.stop()


@pytest.fixture
def deployed_cloud(deployed: Deployment, tmp_path: Path) -> Iterator[Cloud]:
    """A fresh fake holding a copy of the shared deployment's resources: a test that changes a
    deployment starts from one without paying for an apply."""
    cloud = Cloud(tmp_path, snapshot=deployed.cloud.fake)
    shutil.copytree(deployed.cloud.outputs_dir, cloud.outputs_dir)
    yield cloud
    cloud.stop()


@pytest.fixture(scope="session")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cloud]]:
    """`applied(**variables)`: a fresh fake after one apply with those variables, made once per
    session and shared by the read-only tests of that variant."""
    made: dict[str, Cloud] = {}

    def get(**variables: Any) -> Cloud:
        key = json.dumps(variables, sort_keys=True)
        if key not in made:
            made[key] = Cloud(tmp_path_factory.mktemp("variant"))
            made[key].apply(**variables)
        return made[key]

    yield get
    for cloud in made.values():
        cloud.stop()
