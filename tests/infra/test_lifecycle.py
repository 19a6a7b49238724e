"""What happens to a deployment over time: drift, recreation, destroy."""

from __future__ import annotations

from conftest import CONDITIONAL_BINDING, PROJECT, Cloud

from tests.fakes.gcp._platform import OWNER

VM = "llm-canary-llamacpp-1"


def drift_machine_type(cloud: Cloud) -> None:
    """Someone resized the VM by hand."""
    vm = cloud.fake.resources("instances")[VM]
    vm["machineType"] = vm["machineType"].replace("e2-standard-4", "e2-standard-16")


def test_drift_that_cannot_be_applied_is_reported_and_left_alone(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    # The copied outputs live in another directory: one run rewrites the inventory's SSH key path.
    cloud.apply()
    drift_machine_type(cloud)
    result = cloud.apply()
    said = " ".join(result.output.split())
    assert result.changed == 0
    assert cloud.fake.mutating_requests() == []
    assert f"instances {VM} differs from the wanted state in machineType" in said
    assert "infra_drift:" in said and f"{VM}: machineType" in said


def test_drift_is_recreated_when_allowed_keeping_the_static_ip(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    static_ip = cloud.fake.resources("addresses")[f"{VM}-ip"]["address"]
    old_id = cloud.fake.resources("instances")[VM]["id"]
    drift_machine_type(cloud)
    result = cloud.apply(infra_recreate_on_drift=True)
    vm = cloud.fake.resources("instances")[VM]
    assert result.changed > 0
    assert vm["id"] != old_id
    assert vm["machineType"].endswith("/machineTypes/e2-standard-4")
    assert vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == static_ip


def test_firewall_changes_are_applied_in_place(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    rule_id = cloud.fake.resources("firewalls")["llm-canary-allow-llamacpp"]["id"]
    cloud.apply(fly_egress_cidrs=["203.0.113.7/32", "192.0.2.0/28"])
    rule = cloud.fake.resources("firewalls")["llm-canary-allow-llamacpp"]
    assert rule["id"] == rule_id
    assert sorted(rule["sourceRanges"]) == ["10.42.0.0/24", "192.0.2.0/28", "203.0.113.7/32"]


def test_firewall_rule_disabled_by_hand_is_enabled_again(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    cloud.fake.resources("firewalls")["llm-canary-allow-ollama"]["disabled"] = True
    cloud.apply()
    assert cloud.fake.resources("firewalls")["llm-canary-allow-ollama"]["disabled"] is False
    assert [r.method_id for r in cloud.fake.mutating_requests()] == ["compute.firewalls.patch"]


def test_destroy_without_confirmation_deletes_nothing(deployed_cloud: Cloud) -> None:
    result = deployed_cloud.play("playbooks/destroy.yml", destroy_confirm="someone-else")
    assert result.rc != 0
    assert "destroy_confirm must repeat project_id" in " ".join(result.output.split())
    assert deployed_cloud.fake.requests == []


def test_destroy_leaves_nothing_behind(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    result = cloud.play("playbooks/destroy.yml", destroy_confirm=PROJECT)
    assert result.rc == 0, result.output[-3000:]
    assert cloud.fake.compute_state.resources == {}
    assert cloud.fake.platform.projects[PROJECT].service_accounts == {}
    policy = cloud.fake.platform.projects[PROJECT].policy
    assert not [b for b in policy["bindings"] if any("llm-canary-vm@" in m for m in b["members"])]
    # Revoking touches no one else's binding, conditional or not.
    assert CONDITIONAL_BINDING in policy["bindings"]
    assert OWNER in policy["bindings"]


def test_destroy_finds_everything_by_label_whatever_the_counts_and_asks_first(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    # A second llama.cpp VM, then a destroy that is told nothing about counts.
    cloud.apply(llamacpp_vm_count=2)
    # Someone else's VM in the same project, with its own addresses and network: never touched.
    cloud.apply(infra_name_prefix="other-team", enable_ollama_vm=False)
    assert "llm-canary-llamacpp-2" in cloud.fake.resources("instances")
    # Asked first, as before: without an answer nothing is deleted.
    writes = len(cloud.fake.mutating_requests())
    asked = cloud.play("playbooks/destroy.yml")
    assert asked.rc != 0 and "destroy_confirm must repeat project_id" in " ".join(asked.output.split())
    assert len(cloud.fake.mutating_requests()) == writes
    result = cloud.play("playbooks/destroy.yml", destroy_confirm=PROJECT)
    assert result.rc == 0, result.output[-3000:]
    left = [path.rsplit("/", 1)[1] for path in cloud.fake.compute_state.resources]
    assert left and all(name.startswith("other-team") for name in left), left
    assert "other-team-llamacpp-1" in cloud.fake.resources("instances")


def test_destroy_releases_addresses_made_before_they_were_labelled(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    for address in cloud.fake.resources("addresses").values():
        address.pop("labels", None)
    result = cloud.play("playbooks/destroy.yml", destroy_confirm=PROJECT)
    assert result.rc == 0, result.output[-3000:]
    assert cloud.fake.resources("addresses") == {}
