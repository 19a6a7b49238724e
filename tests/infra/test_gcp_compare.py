"""How gcp_compute_resource decides that a live resource matches what the play wants."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_compare import differences

FULL = "https://compute.googleapis.com/compute/v1/projects/p/"


@pytest.mark.parametrize(
    ("desired", "current"),
    [
        pytest.param(
            {"machineType": "zones/z/machineTypes/m"},
            {"machineType": FULL + "zones/z/machineTypes/m"},
            id="partial-vs-full-url",
        ),
        pytest.param({"sizeGb": 50}, {"sizeGb": "50"}, id="int64-as-string"),
        pytest.param({"guestAccelerators": []}, {}, id="empty-list-left-out"),
        pytest.param({"sourceRanges": ["b", "a"]}, {"sourceRanges": ["a", "b"]}, id="scalar-list-order"),
        pytest.param(
            {"scheduling": {"onHostMaintenance": "TERMINATE"}},
            {"scheduling": {"onHostMaintenance": "TERMINATE", "preemptible": False}},
            id="server-defaults-ignored",
        ),
        pytest.param(
            {"disks": [{"boot": True, "initializeParams": {"diskSizeGb": "50"}}]},
            {"disks": [{"boot": True, "source": FULL + "zones/z/disks/d"}]},
            id="create-only-fields-skipped",
        ),
    ],
)
def test_equivalent_resources_have_no_differences(desired: dict, current: dict) -> None:
    assert differences(desired, current) == []


@pytest.mark.parametrize(
    ("desired", "current", "field"),
    [
        pytest.param(
            {"machineType": "zones/z/machineTypes/a"},
            {"machineType": FULL + "zones/z/machineTypes/b"},
            "machineType",
            id="machine-type",
        ),
        pytest.param({"sourceRanges": ["a"]}, {"sourceRanges": ["a", "b"]}, "sourceRanges", id="extra-range"),
        pytest.param(
            {"guestAccelerators": [{"acceleratorCount": 1}]},
            {},
            "guestAccelerators",
            id="accelerator-missing",
        ),
        pytest.param(
            {"scheduling": {"onHostMaintenance": "TERMINATE"}},
            {"scheduling": {"onHostMaintenance": "MIGRATE"}},
            "scheduling.onHostMaintenance",
            id="nested",
        ),
        pytest.param(
            {"tags": {"items": ["a"]}},
            {"tags": {"items": ["b"], "fingerprint": "x"}},
            "tags.items",
            id="tags",
        ),
        pytest.param(
            {"networkInterfaces": [{"networkIP": "10.0.0.2"}]},
            {"networkInterfaces": [{"networkIP": "10.0.0.3"}]},
            "networkInterfaces[0].networkIP",
            id="list-of-dicts",
        ),
    ],
)
def test_a_changed_field_is_named(desired: dict, current: dict, field: str) -> None:
    assert [d["field"] for d in differences(desired, current)] == [field]
