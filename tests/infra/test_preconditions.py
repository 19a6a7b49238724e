"""Bad variables stop the play before its first API call, naming the variable."""

from __future__ import annotations

import re

import pytest
from conftest import Cloud


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        pytest.param({"fly_egress_cidrs": []}, "fly_egress_cidrs", id="no-fly-cidrs"),
        pytest.param({"fly_egress_cidrs": ["203.0.113.300/32"]}, "fly_egress_cidrs", id="malformed-fly-cidr"),
        pytest.param(
            {"fly_egress_cidrs": ["203.0.113.7"]}, "fly_egress_cidrs", id="fly-address-without-prefix"
        ),
        pytest.param(
            {"fly_egress_cidrs": ["203.0.113.7/32", "0.0.0.0/0"]}, "fly_egress_cidrs", id="fly-whole-internet"
        ),
        pytest.param({"fly_egress_cidrs": "203.0.113.7/32"}, "fly_egress_cidrs", id="fly-string-not-list"),
        pytest.param({"ops_allowed_cidrs": ["0.0.0.0/0"]}, "ops_allowed_cidrs", id="ssh-whole-internet"),
        pytest.param({"project_id": ""}, "project_id", id="no-project"),
        pytest.param({"ollama_vm_count": "two"}, "ollama_vm_count", id="count-not-a-number"),
        pytest.param({"enable_llamacpp_service": True}, "enable_llamacpp_service", id="service-not-built"),
        pytest.param(
            {"create_project": True, "infra_project_parent": {"type": "organization", "id": "123456789"}},
            "infra_billing_account",
            id="new-project-without-billing-account",
        ),
        pytest.param({"infra_os_login": True}, "infra_os_login", id="os-login-without-user-and-key"),
        pytest.param(
            {"infra_billing_account": "my-billing"}, "infra_billing_account", id="malformed-billing-account"
        ),
    ],
)
def test_bad_variable_stops_before_any_api_call_naming_it(
    cloud: Cloud, variables: dict[str, object], named: str
) -> None:
    result = cloud.play("playbooks/infra.yml", **variables)
    said = " ".join(result.output.split())
    assert result.rc != 0
    assert re.search(rf"msg: .*\b{named}\b.* must .*e\.g\. -e", said), said[-1500:]
    assert cloud.fake.requests == []
