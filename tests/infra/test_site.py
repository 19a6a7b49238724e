"""site.yml's own checks stop the run before its first API call, naming what to fix."""

from __future__ import annotations

import pytest
from conftest import Cloud


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        pytest.param({"target": "aws"}, "target must be 'gcp' or 'local', got 'aws'", id="unknown-target"),
        pytest.param(
            {"ops_allowed_cidrs": []}, "ops_allowed_cidrs must list the CIDR", id="no-ssh-for-host-plays"
        ),
    ],
)
def test_site_check_stops_before_any_api_call(cloud: Cloud, variables: dict[str, object], said: str) -> None:
    result = cloud.play("site.yml", **variables)
    assert result.rc != 0
    assert said in " ".join(result.output.split()), result.output[-1500:]
    assert cloud.fake.requests == []


def test_site_without_vms_needs_no_ssh_range(cloud: Cloud) -> None:
    result = cloud.play(
        "site.yml", check=True, ops_allowed_cidrs=[], enable_ollama_vm=False, enable_llamacpp_vm=False
    )
    assert result.rc == 0, result.output[-1500:]
    assert "ops_allowed_cidrs must" not in result.output
    assert cloud.fake.requests, "the run should have gone on to the infra play"
