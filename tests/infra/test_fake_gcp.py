"""The fake GCP API is only worth what it refuses: these pin its faithfulness to the real APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PROJECT

from tests.fakes.gcp import FakeGcp, RunningFake

COMPUTE = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}"


class Client:
    def __init__(self, running: RunningFake) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.proxies = {"https": running.proxy_url}
        self.session.verify = str(running.certificates.ca_file)
        self.session.headers["Authorization"] = f"Bearer {running.fake.token}"

    def call(self, method: str, url: str, body: Any = None, **params: Any) -> tuple[int, dict[str, Any]]:
        response = self.session.request(method, url, json=body, params=params, timeout=10)
        return response.status_code, response.json()


def with_subnet(client: Client) -> Client:
    """Network `n` with subnet `s` (10.0.0.0/24, us-central1)."""
    client.call("POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworks": False})
    subnet = {"name": "s", "network": "global/networks/n", "ipCidrRange": "10.0.0.0/24"}
    client.call("POST", f"{COMPUTE}/regions/us-central1/subnetworks", subnet)
    return client


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeGcp, Client]]:
    fake = FakeGcp()
    fake.platform.add_project(PROJECT).services.add("compute.googleapis.com")
    running = RunningFake(fake, tmp_path)
    yield fake, Client(running)
    running.stop()


def test_unknown_body_field_is_refused_and_recorded(fake: tuple[FakeGcp, Client]) -> None:
    gcp, client = fake
    status, body = client.call(
        "POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworkz": False}
    )
    assert status == 400
    assert 'Unknown name "autoCreateSubnetworkz"' in body["error"]["message"]
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert gcp.violations and gcp.resources("networks") == {}


def test_wrong_json_type_is_refused(fake: tuple[FakeGcp, Client]) -> None:
    status, body = fake[1].call(
        "POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworks": "no"}
    )
    assert status == 400
    assert "resource.autoCreateSubnetworks" in body["error"]["message"]


def test_field_required_by_the_method_is_enforced(fake: tuple[FakeGcp, Client]) -> None:
    status, body = fake[1].call("POST", f"{COMPUTE}/global/firewalls", {"network": "global/networks/n"})
    assert status == 400
    assert "Required field 'resource.name'" in body["error"]["message"]


def test_name_must_match_the_documented_pattern(fake: tuple[FakeGcp, Client]) -> None:
    status, body = fake[1].call("POST", f"{COMPUTE}/global/networks", {"name": "Not_Valid"})
    assert status == 400
    assert "Must be a match of regex" in body["error"]["message"]


def test_unknown_query_parameter_is_refused(fake: tuple[FakeGcp, Client]) -> None:
    status, body = fake[1].call("GET", f"{COMPUTE}/global/networks", pageSize="5")
    assert status == 400
    assert "Cannot bind query parameter" in body["error"]["message"]


def test_missing_resource_answers_googles_404(fake: tuple[FakeGcp, Client]) -> None:
    status, body = fake[1].call("GET", f"{COMPUTE}/global/networks/absent")
    assert status == 404
    assert body["error"]["errors"][0]["reason"] == "notFound"


def test_second_insert_of_a_name_is_a_409(fake: tuple[FakeGcp, Client]) -> None:
    client = fake[1]
    client.call("POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworks": False})
    status, body = client.call(
        "POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworks": False}
    )
    assert status == 409
    assert body["error"]["errors"][0]["reason"] == "alreadyExists"


def test_operations_go_pending_running_done(fake: tuple[FakeGcp, Client]) -> None:
    client = fake[1]
    _, op = client.call("POST", f"{COMPUTE}/global/networks", {"name": "n", "autoCreateSubnetworks": False})
    states = [op["status"]]
    while states[-1] != "DONE":
        states.append(client.call("GET", op["selfLink"])[1]["status"])
    assert states == ["PENDING", "RUNNING", "DONE"]
    assert op["targetLink"] == f"{COMPUTE}/global/networks/n"


def test_compute_calls_need_the_api_enabled(tmp_path: Path) -> None:
    gcp = FakeGcp()
    gcp.platform.add_project(PROJECT)
    running = RunningFake(gcp, tmp_path)
    try:
        status, body = Client(running).call("GET", f"{COMPUTE}/global/networks/n")
    finally:
        running.stop()
    assert status == 403
    assert body["error"]["errors"][0]["reason"] == "accessNotConfigured"


def test_gpu_without_terminate_on_maintenance_is_refused(fake: tuple[FakeGcp, Client]) -> None:
    client = with_subnet(fake[1])
    vm = {
        "name": "vm",
        "machineType": "zones/us-central1-a/machineTypes/n1-standard-8",
        "guestAccelerators": [
            {"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}
        ],
        "networkInterfaces": [{"subnetwork": "regions/us-central1/subnetworks/s"}],
        "disks": [
            {
                "boot": True,
                "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"},
            }
        ],
    }
    status, body = client.call("POST", f"{COMPUTE}/zones/us-central1-a/instances", vm)
    assert status == 400
    assert "do not support live migration" in body["error"]["message"]


def test_network_with_a_subnet_cannot_be_deleted(fake: tuple[FakeGcp, Client]) -> None:
    client = with_subnet(fake[1])
    status, body = client.call("DELETE", f"{COMPUTE}/global/networks/n")
    assert status == 400
    assert body["error"]["errors"][0]["reason"] == "resourceInUseByAnotherResource"


def test_proxy_refuses_hosts_other_than_googleapis(fake: tuple[FakeGcp, Client]) -> None:
    with pytest.raises(requests.exceptions.ProxyError):
        fake[1].session.get("https://example.com/", timeout=10)
