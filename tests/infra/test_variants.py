"""Toggles, counts and check mode, each on a fresh fake."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT, Cloud


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


def test_without_gpu_the_ollama_vm_is_a_cpu_machine_without_accelerators(cloud: Cloud) -> None:
    cloud.apply(ollama_enable_gpu=False)
    vm = cloud.fake.resources("instances")["llm-canary-ollama-1"]
    assert vm["machineType"].endswith("/machineTypes/e2-standard-8")
    assert "guestAccelerators" not in vm
    assert vm["scheduling"]["onHostMaintenance"] == "MIGRATE"


@pytest.mark.parametrize(
    ("toggle", "kind", "other"),
    [("enable_ollama_vm", "ollama", "llamacpp"), ("enable_llamacpp_vm", "llamacpp", "ollama")],
)
def test_disabling_a_vm_leaves_out_its_instance_addresses_disk_and_firewall(
    cloud: Cloud, toggle: str, kind: str, other: str
) -> None:
    cloud.apply(**{toggle: False})
    names = [n for c in ("instances", "addresses", "disks", "firewalls") for n in cloud.fake.resources(c)]
    assert not [n for n in names if f"-{kind}" in n]
    assert f"llm-canary-{other}-1" in cloud.fake.resources("instances")
    outputs = cloud.outputs()
    assert outputs[f"{kind}_vm_static_ip"] == ""
    assert [b["kind"] for b in outputs["gateway_backends"]] == [other]


def test_with_no_vm_enabled_no_cidrs_are_needed_and_no_vm_is_made(cloud: Cloud) -> None:
    cloud.apply(enable_ollama_vm=False, enable_llamacpp_vm=False, fly_egress_cidrs=[], ops_allowed_cidrs=[])
    assert cloud.fake.resources("instances") == {}
    assert cloud.fake.resources("firewalls") == {}


def test_empty_ops_allowed_cidrs_makes_no_ssh_rule(cloud: Cloud) -> None:
    cloud.apply(ops_allowed_cidrs=[], enable_ollama_vm=False)
    assert "llm-canary-allow-ssh" not in cloud.fake.resources("firewalls")


def test_vm_counts_give_one_vm_static_ip_and_backend_each(cloud: Cloud) -> None:
    cloud.apply(ollama_vm_count=2, llamacpp_vm_count=3, ollama_enable_gpu=False)
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


def test_create_project_creates_it_before_enabling_apis(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path, new_project=True)
    try:
        cloud.apply(create_project=True, infra_project_parent={"type": "organization", "id": "123456789"})
        assert cloud.fake.platform.projects[PROJECT].parent == {"type": "organization", "id": "123456789"}
        assert cloud.fake.mutating_requests()[0].method_id == "cloudresourcemanager.projects.create"
        assert set(cloud.fake.resources("instances")) == {"llm-canary-ollama-1", "llm-canary-llamacpp-1"}
    finally:
        cloud.stop()
