"""Host checks for the model_disk role: the data disk mounted by UUID, with nofail, where expected.

They run on hosts in group ``ollama`` (whose VM carries the disk) or ``model_disk`` (the QEMU test
VM, LLM_CANARY_HOST_GROUPS). The device and mount point are the role's defaults unless the host's
Ansible variables or MODEL_DISK_DEVICE / MODEL_DISK_MOUNTPOINT say otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

DEFAULTS = {
    "model_disk_device": "/dev/disk/by-id/google-models",
    "model_disk_mountpoint": "/mnt/disks/models",
}


@pytest.fixture(autouse=True)
def model_disk_host(host_groups: set[str]) -> None:
    if not host_groups & {"ollama", "model_disk"}:
        pytest.skip(f"host carries no model disk (groups: {sorted(host_groups) or 'none'})")


@pytest.fixture
def disk(host: Any) -> dict[str, str]:
    variables = host.ansible.get_variables() if host.backend.NAME == "ansible" else {}
    return {
        name: os.environ.get(name.upper()) or variables.get(name, default)
        for name, default in DEFAULTS.items()
    }


def fstab_entry(host: Any, mountpoint: str) -> list[str]:
    lines = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()]
    entries = [fields for fields in lines if len(fields) >= 4 and not fields[0].startswith("#")]
    matching = [fields for fields in entries if fields[1] == mountpoint]
    assert len(matching) == 1, f"/etc/fstab has {len(matching)} lines for {mountpoint}"
    return matching[0]


def test_model_disk_is_mounted_at_its_mountpoint(host: Any, disk: dict[str, str]) -> None:
    mount = host.mount_point(disk["model_disk_mountpoint"])
    assert mount.exists
    assert mount.filesystem == "ext4"
    # The mounted device is the disk the stable name points at, not the boot disk.
    device = host.check_output(f"readlink -f {disk['model_disk_device']}")
    source = host.check_output(f"findmnt --noheadings --output SOURCE {disk['model_disk_mountpoint']}")
    assert source == device


def test_model_disk_fstab_line_names_the_filesystem_uuid_with_nofail(host: Any, disk: dict[str, str]) -> None:
    source, _, fstype, options = fstab_entry(host, disk["model_disk_mountpoint"])[:4]
    uuid = host.check_output(f"blkid --probe --match-tag UUID --output value {disk['model_disk_device']}")
    assert source == f"UUID={uuid}"
    assert fstype == "ext4"
    assert "nofail" in options.split(",")


def test_model_disk_mountpoint_is_root_owned_and_not_world_writable(host: Any, disk: dict[str, str]) -> None:
    root = host.file(disk["model_disk_mountpoint"])
    assert root.user == "root"
    assert root.mode & 0o002 == 0
