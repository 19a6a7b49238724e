"""The container image: builds with podman against the local base image, runs as non-root without
compilers, honours $PORT, serves /health and a proxied request, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
from utils import API_KEY, ROOT, backend, free_port, wait_for

pytestmark = pytest.mark.image
IMAGE = "localhost/llm-canary-gateway:test"
PODMAN = ["podman", "--runtime", "runc"]
# Limits this host's podman can grant (see shared/design/MACHINE-FACTS.md).
RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def _podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], check=check, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run `make setup`")
    base = subprocess.run(
        ["bash", str(ROOT / "scripts/setup.d/70-gateway.sh"), "--print-image"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if _podman("image", "exists", base, check=False).returncode != 0:
        pytest.fail(f"base image {base} is missing: run `make setup`")
    built = subprocess.run(
        [str(ROOT / "gateway/build-image.sh"), IMAGE, base], capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return IMAGE


@pytest.fixture
def container(image: str, upstream) -> Iterator[tuple[str, int]]:
    port = free_port()
    backends = json.dumps([backend("fake", upstream.url, ["m"])])
    started = _podman(
        "run",
        "-d",
        *RUN_LIMITS,
        "--network",
        "host",
        "-e",
        f"PORT={port}",
        "-e",
        "GATEWAY_HOST=127.0.0.1",
        "-e",
        f"GATEWAY_BACKENDS={backends}",
        "-e",
        f"GATEWAY_API_KEYS={API_KEY}",
        image,
    )
    name = started.stdout.strip()
    try:
        yield name, port
    finally:
        _podman("rm", "-f", "-t", "0", name, check=False)


def test_image_runs_as_non_root(image):
    user = _podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "65532:65532"


def test_image_has_no_compilers(image):
    probe = "for c in gcc cc g++ c++ clang make; do command -v $c && exit 3; done; echo none"
    result = _podman("run", "--rm", *RUN_LIMITS, "--entrypoint", "/bin/sh", image, "-c", probe, check=False)
    assert result.stdout.strip() == "none", f"compiler found: {result.stdout}{result.stderr}"


def test_container_honours_port_and_proxies(container):
    _name, port = container
    started = time.monotonic()
    wait_for(lambda: _healthy(port), seconds=30)
    print(f"container start to /health 200: {time.monotonic() - started:.2f}s")
    response = requests.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "fake"


def test_container_stops_cleanly_on_sigterm(container):
    name, port = container
    wait_for(lambda: _healthy(port), seconds=30)
    _podman("kill", "--signal", "TERM", name)
    exit_code = _podman("wait", name, check=False).stdout.strip()
    assert exit_code in ("0", ""), f"exit code {exit_code}"


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
