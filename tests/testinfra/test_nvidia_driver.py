"""Host checks for the nvidia_driver role (GPU hosts: the `ollama` group with ollama_enable_gpu).

Without a GPU (Molecule), the configuration is checked: repository and its key, pinning, the
branch apt would install, nouveau blacklisted. With a GPU (/dev/nvidiactl present), the driver
itself: nvidia-smi reports the pinned branch and the persistence daemon runs. The branch comes
from NVIDIA_DRIVER_BRANCH, else the host's Ansible variable nvidia_driver_branch, else "580".
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("ollama_host")

KEYRING = "/etc/apt/keyrings/nvidia-cuda.asc"
SOURCES = "/etc/apt/sources.list.d/nvidia-cuda.sources"
PIN = "/etc/apt/preferences.d/nvidia-driver.pref"


@pytest.fixture
def branch(host: Any) -> str:
    variables = host.ansible.get_variables() if host.backend.NAME == "ansible" else {}
    return os.environ.get("NVIDIA_DRIVER_BRANCH") or str(variables.get("nvidia_driver_branch", "580"))


@pytest.fixture
def gpu(host: Any, ollama_host: None) -> None:
    if not host.file("/dev/nvidiactl").exists:
        pytest.skip("no NVIDIA GPU on this host")


@pytest.fixture
def cuda_repository(host: Any, ollama_host: None) -> None:
    if not host.file(SOURCES).exists:
        pytest.skip("driver from the distribution's packages, not NVIDIA's CUDA repository")


def test_nouveau_is_blacklisted(host: Any) -> None:
    blacklist = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert blacklist.user == "root"
    assert blacklist.mode == 0o644
    lines = blacklist.content_string.splitlines()
    assert "blacklist nouveau" in lines
    assert "options nouveau modeset=0" in lines


def test_nouveau_is_not_loaded(host: Any) -> None:
    assert not host.file("/sys/module/nouveau").exists


@pytest.mark.usefixtures("cuda_repository")
def test_cuda_repository_is_signed_by_its_own_keyring(host: Any) -> None:
    sources = host.file(SOURCES).content_string
    assert re.search(rf"^Signed-By: {re.escape(KEYRING)}$", sources, re.MULTILINE)
    assert re.search(r"^Suites: /$", sources, re.MULTILINE)


@pytest.mark.usefixtures("cuda_repository")
def test_cuda_keyring_holds_exactly_one_root_owned_key(host: Any) -> None:
    keyring = host.file(KEYRING)
    assert keyring.user == "root"
    assert keyring.mode == 0o644
    listing = host.check_output(f"gpg --show-keys --with-colons --no-default-keyring < {KEYRING}")
    assert sum(line.startswith("fpr:") for line in listing.splitlines()) == 1


def test_driver_packages_are_pinned_to_the_branch(host: Any, branch: str) -> None:
    pin = host.file(PIN).content_string
    assert f"Pin: version {branch}.*" in pin.splitlines()
    assert "Pin-Priority: 1001" in pin.splitlines()


# Kernel headers as Debian and Ubuntu name them: linux-headers-<version>-<ABI>-<flavour> for one
# kernel (6.1.0-28-cloud-amd64, 6.8.0-1015-gcp), linux-headers-<flavour> for the metapackage.
VERSIONED_HEADERS = re.compile(r"^linux-headers-[0-9][^-]*-(?:[0-9]+-)?(?P<flavour>[a-z][a-z0-9-]*)$")


def test_kernel_headers_metapackage_follows_every_installed_kernel_flavour(host: Any) -> None:
    """DKMS builds the driver for the next kernel only if its headers arrive with it: the
    flavour's metapackage (linux-headers-cloud-amd64) must sit beside each kernel's headers."""
    installed = host.check_output(
        "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' 'linux-headers-*' 2>/dev/null || true"
    ).splitlines()
    packages = {line.split()[1] for line in installed if line.startswith("ii ")}
    flavours = {m["flavour"] for p in packages if (m := VERSIONED_HEADERS.match(p)) and "common" not in p}
    if not flavours:
        pytest.skip("no kernel headers installed (nvidia_driver_manage_kernel_module is false here)")
    assert {f"linux-headers-{flavour}" for flavour in flavours} <= packages, packages


def apt_policy(host: Any, names: list[str]) -> dict[str, tuple[str, list[str]]]:
    """{package: (candidate version, every version offered)} from `apt-cache policy`."""
    policy: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(
        r"^(?=\S+:$)", host.check_output(f"apt-cache policy {' '.join(names)}"), flags=re.M
    ):
        match = re.match(r"(\S+):\n.*?Candidate: (\S+)\n", entry, re.DOTALL)
        if match:
            policy[match.group(1)] = (
                match.group(2),
                re.findall(r"^\s+(?:\*\*\* )?(\S+) -?\d+$", entry, re.M),
            )
    return policy


def test_apt_installs_the_pinned_branch_even_when_newer_ones_exist(host: Any, branch: str) -> None:
    policy = apt_policy(host, host.check_output("apt-cache pkgnames nvidia-").split())
    # Packages offered in the branch (others, such as nvidia-container-toolkit, have no branch).
    in_branch = {
        n: c for n, (c, versions) in policy.items() if any(v.startswith(f"{branch}.") for v in versions)
    }
    assert in_branch, f"the repositories offer no package of branch {branch}"
    assert all(candidate.startswith(f"{branch}.") for candidate in in_branch.values()), in_branch


@pytest.mark.usefixtures("gpu")
def test_nvidia_smi_reports_the_pinned_branch_on_every_gpu(host: Any, branch: str) -> None:
    versions = host.check_output("nvidia-smi --query-gpu=driver_version --format=csv,noheader").split()
    assert versions
    assert all(v.startswith(f"{branch}.") for v in versions)


@pytest.mark.usefixtures("gpu")
def test_persistence_daemon_is_enabled_and_running(host: Any) -> None:
    if not host.file("/usr/bin/nvidia-persistenced").exists:
        pytest.skip("this driver ships no nvidia-persistenced")
    daemon = host.service("nvidia-persistenced")
    assert daemon.is_enabled
    assert daemon.is_running
