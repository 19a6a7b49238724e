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
def start_gateway(log_dir: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(backends: list[dict[str, Any]], **settings: str) -> Gateway:
        gateway = Gateway(backends, **settings)
        started.append(gateway)
        return gateway.start(log_dir)  # type: ignore[return-value]

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def start_upstream(log_dir: Path) -> Iterator[Callable[[], FaultUpstream]]:
    started: list[FaultUpstream] = []

    def start() -> FaultUpstream:
        upstream = FaultUpstream()
        started.append(upstream)
        return upstream.start(log_dir)  # type: ignore[return-value]

    yield start
    for upstream in started:
        upstream.stop()


@pytest.fixture
def upstream(start_upstream: Callable[[], FaultUpstream]) -> FaultUpstream:
    return start_upstream()


@pytest.fixture
def upstream2(start_upstream: Callable[[], FaultUpstream]) -> FaultUpstream:
    return start_upstream()
