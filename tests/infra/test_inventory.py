"""The dynamic inventory (google.cloud.gcp_compute) finds the deployed VMs in the host groups."""

from __future__ import annotations

import json
import subprocess

import yaml
from conftest import PROJECT, ROOT, Cloud, Deployment


def plain(value: object) -> object:
    """ansible-inventory --list wraps values that came from the API as {"__ansible_unsafe": ...}."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def test_dynamic_inventory_gives_the_groups_and_addresses_add_host_gave(deployed: Deployment) -> None:
    cloud = deployed.cloud
    inventory = cloud.outputs_dir / f"{PROJECT}.gcp_compute.yml"
    done = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        cwd=ROOT,
        env=cloud.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    added = json.loads((cloud.outputs_dir / "hosts.json").read_text())
    assert sorted(listed["ollama"]["hosts"]) == added["ollama"]
    assert sorted(listed["llamacpp"]["hosts"]) == added["llamacpp"]
    hostvars = listed["_meta"]["hostvars"]
    for name, (public, private) in added["hosts"].items():
        assert (plain(hostvars[name]["ansible_host"]), plain(hostvars[name]["private_ip"])) == (
            public,
            private,
        )


def test_written_inventory_names_the_auth_kind_and_works_without_gcp_auth_kind(cloud: Cloud) -> None:
    """The plugin requires auth_kind; the file carries the run's kind (never its token), so the
    inventory works for a user whose environment has no GCP_AUTH_KIND."""
    del cloud.env["GCP_AUTH_KIND"]
    cloud.apply(enable_ollama_vm=False, infra_gcp_auth_kind="accesstoken")
    inventory = cloud.outputs_dir / f"{PROJECT}.gcp_compute.yml"
    written = yaml.safe_load(inventory.read_text())
    assert written["auth_kind"] == "accesstoken"
    assert cloud.fake.token not in inventory.read_text()
    done = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"],
        cwd=ROOT,
        env=cloud.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert list(json.loads(done.stdout)["llamacpp"]["hosts"]) == ["llm-canary-llamacpp-1"]


def test_shipped_inventory_names_an_auth_kind() -> None:
    shipped = yaml.safe_load((ROOT / "inventory" / "gcp.gcp_compute.yml").read_text())
    assert shipped["auth_kind"] == "application"
