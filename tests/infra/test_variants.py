"""Toggles, counts, check mode and project creation."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, Cloud

Applied = Callable[..., Cloud]


def test_check_mode_makes_no_mutating_call(cloud: Cloud) -> None:
    cloud.fake.platform.projects[PROJECT].services.update(["compute.googleapis.com", "iam.googleapis.com"])
    result = cloud.play("playbooks/infra.yml", check=True)
    assert result.rc == 0, result.output[-3000:]
    assert result.changed > 0
    assert "instances/llm-canary-ollama-1" in " ".join(r.path for r in cloud.fake.requests)
    assert cloud.fake.mutating_requests() == []


def test_check_mode_on_a_project_without_the_compute_api_stops_after_saying_so(cloud: Cloud) -> None:
    result = cloud.play("playbooks/infra.yml", check=True)
    assert result.rc == 0, result.output[-3000:]
    said = " ".join(result.output.split())
    assert "compute.googleapis.com" in said and "would be enabled first" in said
    assert cloud.fake.mutating_requests() == []


# Two shared variants: a scaled-out CPU deployment, and one without Ollama or SSH.
CPU_SCALED = {"ollama_enable_gpu": False, "ollama_vm_count": 2, "llamacpp_vm_count": 3}
NO_OLLAMA_NO_SSH = {"enable_ollama_vm": False, "ops_allowed_cidrs": []}


def test_without_gpu_the_ollama_vm_is_a_cpu_machine_without_accelerators(applied: Applied) -> None:
    vm = applied(**CPU_SCALED).fake.resources("instances")["llm-canary-ollama-1"]
    assert vm["machineType"].endswith("/machineTypes/e2-standard-8")
    assert "guestAccelerators" not in vm
    assert vm["scheduling"]["onHostMaintenance"] == "MIGRATE"


def test_vm_counts_give_one_vm_static_ip_and_backend_each(applied: Applied) -> None:
    cloud = applied(**CPU_SCALED)
    instances = cloud.fake.resources("instances")
    assert sorted(instances) == [
        "llm-canary-llamacpp-1",
        "llm-canary-llamacpp-2",
        "llm-canary-llamacpp-3",
        "llm-canary-ollama-1",
        "llm-canary-ollama-2",
    ]
    static_ips = {vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"] for vm in instances.values()}
    assert len(static_ips) == 5
    backends = cloud.outputs()["gateway_backends"]
    assert sorted(b["name"] for b in backends) == sorted(instances)
    assert len({b["url"] for b in backends}) == 5


@pytest.mark.parametrize(
    ("variables", "kind", "other"),
    [
        pytest.param(NO_OLLAMA_NO_SSH, "ollama", "llamacpp", id="enable_ollama_vm"),
        pytest.param({"enable_llamacpp_vm": False}, "llamacpp", "ollama", id="enable_llamacpp_vm"),
    ],
)
def test_disabling_a_vm_leaves_out_its_instance_addresses_disk_and_firewall(
    applied: Applied, variables: dict[str, Any], kind: str, other: str
) -> None:
    cloud = applied(**variables)
    names = [n for c in ("instances", "addresses", "disks", "firewalls") for n in cloud.fake.resources(c)]
    assert not [n for n in names if f"-{kind}" in n]
    assert f"llm-canary-{other}-1" in cloud.fake.resources("instances")
    outputs = cloud.outputs()
    assert outputs[f"{kind}_vm_static_ip"] == ""
    assert [b["kind"] for b in outputs["gateway_backends"]] == [other]


def test_empty_ops_allowed_cidrs_makes_no_ssh_rule(applied: Applied) -> None:
    assert "llm-canary-allow-ssh" not in applied(**NO_OLLAMA_NO_SSH).fake.resources("firewalls")


def test_with_no_vm_enabled_no_cidrs_are_needed_and_no_vm_is_made(cloud: Cloud) -> None:
    cloud.apply(enable_ollama_vm=False, enable_llamacpp_vm=False, fly_egress_cidrs=[], ops_allowed_cidrs=[])
    assert cloud.fake.resources("instances") == {}
    assert cloud.fake.resources("firewalls") == {}


def test_create_project_creates_it_before_enabling_apis(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path, new_project=True)
    try:
        parent = {"type": "organization", "id": "123456789"}
        cloud.apply(
            create_project=True,
            infra_project_parent=parent,
            infra_billing_account="012345-6789AB-CDEF01",
            enable_ollama_vm=False,
            enable_llamacpp_vm=False,
        )
        assert cloud.fake.platform.projects[PROJECT].parent == parent
        assert cloud.fake.platform.projects[PROJECT].billing_account == "billingAccounts/012345-6789AB-CDEF01"
        calls = [r.method_id for r in cloud.fake.mutating_requests()]
        assert calls[:3] == [
            "cloudresourcemanager.projects.create",
            "cloudbilling.projects.updateBillingInfo",
            "serviceusage.services.batchEnable",
        ]
        assert set(cloud.fake.resources("networks")) == {"llm-canary"}
    finally:
        cloud.stop()


def test_os_login_puts_no_ssh_key_in_the_metadata_and_logs_in_as_the_users_account(cloud: Cloud) -> None:
    key = cloud.outputs_dir.parent / "google_compute_engine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cloud.apply(
        enable_ollama_vm=False,
        infra_os_login=True,
        infra_os_login_user="jane_example_com",
        infra_ssh_private_key_file=str(key),
    )
    vm = cloud.fake.resources("instances")["llm-canary-llamacpp-1"]
    assert vm["metadata"]["items"] == [{"key": "enable-oslogin", "value": "TRUE"}]
    written = (cloud.outputs_dir / f"{PROJECT}.gcp_compute.yml").read_text()
    assert "jane_example_com" in written and str(key) in written
    assert not (cloud.outputs_dir / PROJECT / "ssh" / "id_ed25519").exists()
