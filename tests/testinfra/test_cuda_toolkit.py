"""Host checks for the cuda_toolkit role (llama.cpp hosts with llamacpp_enable_gpu).

The toolkit is where builds look for it (/usr/local/cuda, llamacpp_cuda_home) and is the pinned
release: CUDA_TOOLKIT_VERSION, else the host's Ansible variable cuda_toolkit_version, else the
role's default "12.9". Skipped on hosts without a toolkit (CPU llama.cpp hosts).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("llamacpp_host")

LINK = "/usr/local/cuda"


@pytest.fixture
def version(host: Any) -> str:
    variables = host.ansible.get_variables() if host.backend.NAME == "ansible" else {}
    return os.environ.get("CUDA_TOOLKIT_VERSION") or str(variables.get("cuda_toolkit_version", "12.9"))


@pytest.fixture
def toolkit(host: Any) -> None:
    if not host.file(LINK).exists:
        pytest.skip("no CUDA toolkit on this host (a CPU llama.cpp host)")


@pytest.mark.usefixtures("toolkit")
def test_cuda_link_points_at_the_pinned_release(host: Any, version: str) -> None:
    assert host.check_output(f"readlink -f {LINK}") == f"/usr/local/cuda-{version}"


@pytest.mark.usefixtures("toolkit")
def test_the_pinned_toolkit_package_is_installed(host: Any, version: str) -> None:
    assert host.package(f"cuda-toolkit-{version.replace('.', '-')}").is_installed


@pytest.mark.usefixtures("toolkit")
def test_nvcc_reports_the_pinned_release(host: Any, version: str) -> None:
    said = host.check_output(f"{LINK}/bin/nvcc --version")
    assert re.search(rf"release {re.escape(version)},", said), said
