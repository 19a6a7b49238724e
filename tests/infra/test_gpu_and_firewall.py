"""The llama.cpp VM with a GPU (llamacpp_enable_gpu), the GPU table's preconditions, Secure Boot
stated off on GPU VMs, and the exporter port's own firewall rule."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FLY, OPS, ROOT, Cloud, Deployment

Applied = Callable[..., Cloud]
GATEWAY_RANGE = "10.42.0.0/24"
LLAMACPP = "llm-canary-llamacpp-1"
T4 = "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4"


def test_with_llamacpp_enable_gpu_the_llamacpp_vm_gets_the_gpu_machine_type_and_terminate(
    applied: Applied,
) -> None:
    vm = applied(llamacpp_enable_gpu=True, enable_ollama_vm=False).fake.resources("instances")[LLAMACPP]
    assert vm["machineType"].endswith("/machineTypes/n1-standard-8")
    assert [(a["acceleratorType"].endswith(T4), a["acceleratorCount"]) for a in vm["guestAccelerators"]] == [
        (True, 1)
    ]
    assert vm["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert vm["shieldedInstanceConfig"] == {"enableSecureBoot": False}


def test_another_gpu_of_the_table_on_its_machine_family(applied: Applied) -> None:
    cloud = applied(
        llamacpp_enable_gpu=True,
        enable_ollama_vm=False,
        infra_llamacpp_accelerator_type="nvidia-l4",
        infra_llamacpp_gpu_machine_type="g2-standard-8",
    )
    vm = cloud.fake.resources("instances")[LLAMACPP]
    assert vm["machineType"].endswith("/machineTypes/g2-standard-8")
    assert vm["guestAccelerators"][0]["acceleratorType"].endswith("/acceleratorTypes/nvidia-l4")


def test_by_default_the_llamacpp_vm_has_no_gpu_and_no_secure_boot_setting(deployed: Deployment) -> None:
    vm = deployed.cloud.fake.resources("instances")[LLAMACPP]
    assert vm["machineType"].endswith("/machineTypes/e2-standard-4")
    assert not vm.get("guestAccelerators")
    assert vm["scheduling"]["onHostMaintenance"] == "MIGRATE"
    assert not vm.get("shieldedInstanceConfig")


def test_the_ollama_gpu_vm_states_secure_boot_off(deployed: Deployment) -> None:
    vm = deployed.cloud.fake.resources("instances")["llm-canary-ollama-1"]
    assert vm["shieldedInstanceConfig"] == {"enableSecureBoot": False}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        pytest.param(
            {"infra_llamacpp_accelerator_type": "nvidia-tesla-v100"},
            "infra_llamacpp_accelerator_type",
            id="gpu-not-in-the-table",
        ),
        pytest.param(
            {"infra_llamacpp_accelerator_type": "nvidia-l4"},
            "infra_llamacpp_gpu_machine_type",
            id="l4-on-n1",
        ),
        pytest.param(
            {"infra_llamacpp_gpu_machine_type": "a2-highgpu-1g"},
            "infra_llamacpp_gpu_machine_type",
            id="t4-on-a2",
        ),
        pytest.param(
            {"infra_llamacpp_accelerator_count": 0},
            "infra_llamacpp_gpu_machine_type",
            id="no-gpu-count",
        ),
    ],
)
def test_a_gpu_the_machine_type_cannot_take_stops_before_any_api_call(
    cloud: Cloud, variables: dict[str, Any], named: str
) -> None:
    result = cloud.play("playbooks/infra.yml", llamacpp_enable_gpu=True, **variables)
    said = " ".join(result.output.split())
    assert result.rc != 0
    assert re.search(rf"msg: .*\b{named}\b.* must .*e\.g\. -e", said), said[-1500:]
    assert cloud.fake.requests == []


def test_the_gpu_table_is_named_when_the_gpu_is_unknown(cloud: Cloud) -> None:
    result = cloud.play(
        "playbooks/infra.yml", llamacpp_enable_gpu=True, infra_llamacpp_accelerator_type="nvidia-tesla-v100"
    )
    assert "infra_accelerators" in " ".join(result.output.split())


def test_model_rules_open_only_the_model_port(deployed: Deployment) -> None:
    rules = deployed.cloud.fake.resources("firewalls")
    for kind, port in (("ollama", "11434"), ("llamacpp", "8080")):
        assert rules[f"llm-canary-allow-{kind}"]["allowed"] == [{"IPProtocol": "tcp", "ports": [port]}]


def test_exporter_port_opens_to_the_gateway_and_ops_ranges_never_to_fly(deployed: Deployment) -> None:
    rule = deployed.cloud.fake.resources("firewalls")["llm-canary-allow-exporter"]
    assert sorted(rule["sourceRanges"]) == sorted([GATEWAY_RANGE, OPS])
    assert FLY not in rule["sourceRanges"]
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["9101"]}]
    assert sorted(rule["targetTags"]) == ["llm-canary-llamacpp", "llm-canary-ollama"]


def test_no_exporter_rule_when_neither_gateway_nor_ops_ranges_exist(applied: Applied) -> None:
    cloud = applied(enable_ollama_vm=False, enable_gateway_service=False, ops_allowed_cidrs=[])
    assert "llm-canary-allow-exporter" not in cloud.fake.resources("firewalls")
    assert cloud.fake.resources("firewalls")["llm-canary-allow-llamacpp"]["sourceRanges"] == [FLY]


def test_an_older_deployment_gets_9101_taken_out_of_its_model_rules(deployed_cloud: Cloud) -> None:
    cloud = deployed_cloud
    rules = cloud.fake.resources("firewalls")
    # What the play made before the exporter had a rule of its own.
    state = cloud.fake.compute_state.resources
    del state[next(path for path, rule in state.items() if rule is rules["llm-canary-allow-exporter"])]
    ids = {}
    for kind, port in (("ollama", "11434"), ("llamacpp", "8080")):
        rules[f"llm-canary-allow-{kind}"]["allowed"] = [{"IPProtocol": "tcp", "ports": [port, "9101"]}]
        ids[kind] = rules[f"llm-canary-allow-{kind}"]["id"]
    cloud.apply()
    rules = cloud.fake.resources("firewalls")
    for kind, port in (("ollama", "11434"), ("llamacpp", "8080")):
        assert rules[f"llm-canary-allow-{kind}"]["allowed"] == [{"IPProtocol": "tcp", "ports": [port]}]
        assert rules[f"llm-canary-allow-{kind}"]["id"] == ids[kind]
    assert "llm-canary-allow-exporter" in rules
    assert sorted(r.method_id for r in cloud.fake.mutating_requests()) == [
        "compute.firewalls.insert",
        "compute.firewalls.patch",
        "compute.firewalls.patch",
    ]


def llamacpp_host_vars(tmp_path: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    """llamacpp_cuda and llamacpp_cuda_architectures as a host of group llamacpp sees them (one
    plain VM, one local-target host, which is in group local_llamacpp too)."""
    (tmp_path / "group_vars").symlink_to(ROOT / "group_vars")
    hosts = {"gce": {"ansible_connection": "local"}, "podman": {"ansible_connection": "local"}}
    inventory = {"llamacpp": {"hosts": hosts}, "local_llamacpp": {"hosts": {"podman": {}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    return subprocess.run(
        [
            "ansible",
            "-i",
            str(tmp_path / "inventory.json"),
            "gce",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "msg=cuda={{ llamacpp_cuda }};arch={{ llamacpp_cuda_architectures }}",
            "-e",
            json.dumps(variables),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param({}, "cuda=False", id="cpu-by-default"),
        pytest.param({"llamacpp_enable_gpu": True}, "cuda=True;arch=75", id="t4"),
        pytest.param(
            {"llamacpp_enable_gpu": True, "infra_llamacpp_accelerator_type": "nvidia-l4"},
            "cuda=True;arch=89",
            id="l4",
        ),
        pytest.param(
            {"llamacpp_enable_gpu": True, "infra_llamacpp_accelerator_type": "nvidia-a100-80gb"},
            "cuda=True;arch=80",
            id="a100-80gb",
        ),
        pytest.param(
            {"llamacpp_enable_gpu": True, "infra_llamacpp_accelerator_type": "nvidia-h100-mega-80gb"},
            "cuda=True;arch=90",
            id="h100-mega",
        ),
        pytest.param({"llamacpp_enable_gpu": True, "target": "local"}, "cuda=False", id="local-stays-cpu"),
    ],
)
def test_the_llamacpp_build_targets_the_vms_gpu(
    tmp_path: Path, variables: dict[str, Any], expected: str
) -> None:
    done = llamacpp_host_vars(tmp_path, **variables)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout


def test_a_gpu_without_a_cuda_architecture_fails_naming_the_table(tmp_path: Path) -> None:
    done = llamacpp_host_vars(
        tmp_path, llamacpp_enable_gpu=True, infra_llamacpp_accelerator_type="nvidia-tesla-v100"
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "infra_llamacpp_accelerator_type nvidia-tesla-v100 is not in infra_accelerators" in said
