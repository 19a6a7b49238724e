"""Fixtures: real llama-servers (session), fault upstreams and gateways (per test, stopped after)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from utils import (
    LLAMA_SERVER,
    SMOLLM2,
    TESTS,
    TINY_MODEL,
    FaultUpstream,
    Gateway,
    ServerProcess,
    llama_server,
)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The generated tiny model (made once; it lives in build/models/ beside SmolLM2)."""
    if not TINY_MODEL.exists():
        subprocess.run([sys.executable, str(TESTS / "tiny_model.py"), str(TINY_MODEL)], check=True)
    return TINY_MODEL


def _require(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make setup`")


@pytest.fixture(scope="session")
def llama_tiny(tiny_model: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """llama-server with the tiny model: fast, gibberish answers."""
    _require(LLAMA_SERVER)
    server = llama_server(tiny_model, "--parallel", "4").start(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_smol(log_dir: Path) -> Iterator[ServerProcess]:
    """llama-server with SmolLM2-135M-Instruct: real answers."""
    _require(LLAMA_SERVER)
    _require(SMOLLM2)
    server = llama_server(SMOLLM2, "--parallel", "2").start(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_embed(tiny_model: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """A second llama-server, started with --embeddings, for /v1/embeddings."""
    _require(LLAMA_SERVER)
    server = llama_server(tiny_model, "--embeddings", "--pooling", "mean").start(log_dir)
    yield server
    server.stop()


@pytest.fixture
def started(log_dir: Path) -> Iterator[Callable[[ServerProcess], ServerProcess]]:
    """Start a server for this test; every one is stopped after it, the last started first."""
    servers: list[ServerProcess] = []

    def start(server: ServerProcess) -> ServerProcess:
        servers.append(server)
        return server.start(log_dir)

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def start_gateway(started: Callable[[ServerProcess], ServerProcess]) -> Callable[..., Gateway]:
    def start(backends: list[dict[str, Any]], **settings: str) -> Gateway:
        return started(Gateway(backends, **settings))  # type: ignore[return-value]

    return start


@pytest.fixture
def start_upstream(started: Callable[[ServerProcess], ServerProcess]) -> Callable[[], FaultUpstream]:
    return lambda: started(FaultUpstream())  # type: ignore[return-value]


@pytest.fixture
def upstream(start_upstream: Callable[[], FaultUpstream]) -> FaultUpstream:
    return start_upstream()


@pytest.fixture
def upstream2(start_upstream: Callable[[], FaultUpstream]) -> FaultUpstream:
    return start_upstream()
