"""A fresh apply with the defaults, and a second run of it (one shared deployment)."""

from __future__ import annotations

import json
from typing import Any

from conftest import CONDITIONAL_BINDING, FLY, OPS, PROJECT, ROOT, Deployment

from tests.fakes.gcp._platform import OWNER

COMPUTE = "https://compute.googleapis.com/compute/v1/projects/canary-test/"


def nat_ip(vm: dict[str, Any]) -> str:
    return vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]


def test_fresh_apply_creates_exactly_the_expected_resources(deployed: Deployment) -> None:
    fake = deployed.cloud.fake
    assert set(fake.resources("networks")) == {"llm-canary"}
    assert set(fake.resources("subnetworks")) == {"llm-canary-us-central1"}
    assert set(fake.resources("firewalls")) == {
        "llm-canary-allow-ollama",
        "llm-canary-allow-llamacpp",
        "llm-canary-allow-exporter",
        "llm-canary-allow-ssh",
    }
    assert set(fake.resources("addresses")) == {
        "llm-canary-ollama-1-ip",
        "llm-canary-ollama-1-internal-ip",
        "llm-canary-llamacpp-1-ip",
        "llm-canary-llamacpp-1-internal-ip",
    }
    # Each boot disk is named after its instance; the Ollama VM also has its model disk.
    assert set(fake.resources("disks")) == {
        "llm-canary-ollama-1",
        "llm-canary-ollama-1-models",
        "llm-canary-llamacpp-1",
    }
    assert set(fake.resources("instances")) == {"llm-canary-ollama-1", "llm-canary-llamacpp-1"}


def test_apis_are_enabled_before_any_compute_call(deployed: Deployment) -> None:
    first_mutation = deployed.cloud.fake.mutating_requests()[0]
    assert first_mutation.method_id == "serviceusage.services.batchEnable"
    assert "compute.googleapis.com" in first_mutation.body["serviceIds"]


def test_vm_service_account_is_dedicated(deployed: Deployment) -> None:
    accounts = deployed.cloud.fake.platform.projects[PROJECT].service_accounts
    assert list(accounts) == [f"llm-canary-vm@{PROJECT}.iam.gserviceaccount.com"]


def test_vm_service_account_gets_log_and_metric_roles_only(deployed: Deployment) -> None:
    policy = deployed.cloud.fake.platform.projects[PROJECT].policy
    member = f"serviceAccount:llm-canary-vm@{PROJECT}.iam.gserviceaccount.com"
    assert sorted(b["role"] for b in policy["bindings"] if member in b["members"]) == [
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
    ]
    assert CONDITIONAL_BINDING in policy["bindings"]
    assert OWNER in policy["bindings"]


def test_ollama_vm_has_gpu_terminate_scheduling_data_disk_and_least_privilege_identity(
    deployed: Deployment,
) -> None:
    vm = deployed.cloud.fake.resources("instances")["llm-canary-ollama-1"]
    assert vm["machineType"] == COMPUTE + "zones/us-central1-a/machineTypes/n1-standard-8"
    assert vm["guestAccelerators"] == [
        {
            "acceleratorType": COMPUTE + "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4",
            "acceleratorCount": 1,
        }
    ]
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    data = [d for d in vm["disks"] if not d["boot"]]
    assert [(d["source"], d["autoDelete"]) for d in data] == [
        (COMPUTE + "zones/us-central1-a/disks/llm-canary-ollama-1-models", False)
    ]
    assert vm["serviceAccounts"] == [
        {
            "email": f"llm-canary-vm@{PROJECT}.iam.gserviceaccount.com",
            "scopes": [
                "https://www.googleapis.com/auth/logging.write",
                "https://www.googleapis.com/auth/monitoring.write",
            ],
        }
    ]
    assert vm["labels"] == {"app": "llm-canary", "managed-by": "ansible", "role": "ollama"}
    assert vm["tags"]["items"] == ["llm-canary-ollama"]


def test_each_vm_uses_its_reserved_static_and_internal_ip(deployed: Deployment) -> None:
    fake = deployed.cloud.fake
    addresses = fake.resources("addresses")
    for name, vm in fake.resources("instances").items():
        nic = vm["networkInterfaces"][0]
        assert nic["accessConfigs"][0]["natIP"] == addresses[f"{name}-ip"]["address"]
        assert nic["networkIP"] == addresses[f"{name}-internal-ip"]["address"]
        assert addresses[f"{name}-ip"]["status"] == "IN_USE"
        assert addresses[f"{name}-ip"]["users"] == [vm["selfLink"]]


def test_model_ports_open_only_to_fly_and_gateway_ranges(deployed: Deployment) -> None:
    rules = deployed.cloud.fake.resources("firewalls")
    for kind, port in (("ollama", "11434"), ("llamacpp", "8080")):
        rule = rules[f"llm-canary-allow-{kind}"]
        assert sorted(rule["sourceRanges"]) == sorted([FLY, "10.42.0.0/24"])
        assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": [port]}]
        assert rule["targetTags"] == [f"llm-canary-{kind}"]


def test_ssh_opens_only_to_ops_ranges(deployed: Deployment) -> None:
    rule = deployed.cloud.fake.resources("firewalls")["llm-canary-allow-ssh"]
    assert rule["sourceRanges"] == [OPS]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]


def test_no_rule_opens_anything_to_the_world(deployed: Deployment) -> None:
    for rule in deployed.cloud.fake.resources("firewalls").values():
        assert "0.0.0.0/0" not in rule["sourceRanges"]


def test_second_run_reports_no_change(deployed: Deployment) -> None:
    assert deployed.first.changed > 0
    assert deployed.second.changed == 0, deployed.second.output[-3000:]


def test_second_run_sends_no_mutating_call(deployed: Deployment) -> None:
    assert len(deployed.cloud.fake.mutating_requests()) == deployed.mutating_after_first


def test_outputs_file_matches_the_fake_state(deployed: Deployment) -> None:
    fake = deployed.cloud.fake
    addresses = fake.resources("addresses")
    instances = fake.resources("instances")
    outputs = deployed.cloud.outputs()
    credentials = deployed.cloud.outputs_dir / PROJECT / "credentials"
    assert {k: outputs[k] for k in outputs if k not in ("vms", "gateway_backends")} == {
        "ollama_vm_public_ip": nat_ip(instances["llm-canary-ollama-1"]),
        "ollama_vm_static_ip": addresses["llm-canary-ollama-1-ip"]["address"],
        "ollama_vm_private_ip": addresses["llm-canary-ollama-1-internal-ip"]["address"],
        "llamacpp_url": f"https://{addresses['llm-canary-llamacpp-1-ip']['address']}:8080",
        "llamacpp_vm_public_ip": nat_ip(instances["llm-canary-llamacpp-1"]),
        "llamacpp_vm_static_ip": addresses["llm-canary-llamacpp-1-ip"]["address"],
        "ollama_url": f"https://{addresses['llm-canary-ollama-1-ip']['address']}:11434",
        "model_ca_file": f"{credentials}/ca.crt",
        "ollama_api_key_file": f"{credentials}/ollama-api-key",
        "llamacpp_api_key_file": f"{credentials}/llamacpp-api-key",
        "gateway_url": "",
    }


def test_gateway_backends_point_at_private_addresses(deployed: Deployment) -> None:
    addresses = deployed.cloud.fake.resources("addresses")
    assert deployed.cloud.outputs()["gateway_backends"] == [
        {
            "name": "llm-canary-ollama-1",
            "kind": "ollama",
            "url": f"https://{addresses['llm-canary-ollama-1-internal-ip']['address']}:11434",
        },
        {
            "name": "llm-canary-llamacpp-1",
            "kind": "llamacpp",
            "url": f"https://{addresses['llm-canary-llamacpp-1-internal-ip']['address']}:8080",
        },
    ]


def test_prometheus_scrape_targets_are_the_vms_private_addresses(deployed: Deployment) -> None:
    addresses = deployed.cloud.fake.resources("addresses")
    private = {
        vm: addresses[f"{vm}-internal-ip"]["address"]
        for vm in ("llm-canary-ollama-1", "llm-canary-llamacpp-1")
    }
    prometheus = deployed.cloud.outputs_dir / PROJECT / "prometheus"

    def targets(job: str) -> list[dict]:
        return json.loads((prometheus / "targets" / f"{job}.json").read_text())

    assert targets("ai_exporter") == [
        {"targets": [f"{private[vm]}:9101"], "labels": {"vm": vm, "kind": kind}}
        for vm, kind in (("llm-canary-ollama-1", "ollama"), ("llm-canary-llamacpp-1", "llamacpp"))
    ]
    assert targets("llamacpp") == [
        {
            "targets": [f"{private['llm-canary-llamacpp-1']}:8080"],
            "labels": {"vm": "llm-canary-llamacpp-1", "kind": "llamacpp"},
        }
    ]
    assert targets("gateway") == []
    assert (prometheus / "prometheus.yml").read_text() == (
        ROOT / "observability/prometheus/prometheus-gcp.yml"
    ).read_text()
    assert (prometheus / "alerts.yaml").is_file()


def test_created_vms_join_the_host_groups_with_their_addresses(deployed: Deployment) -> None:
    hosts = json.loads((deployed.cloud.outputs_dir / "hosts.json").read_text())
    addresses = deployed.cloud.fake.resources("addresses")
    assert hosts["ollama"] == ["llm-canary-ollama-1"]
    assert hosts["llamacpp"] == ["llm-canary-llamacpp-1"]
    for name, (public, private) in hosts["hosts"].items():
        assert public == addresses[f"{name}-ip"]["address"]
        assert private == addresses[f"{name}-internal-ip"]["address"]
