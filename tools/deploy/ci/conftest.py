"""Fixtures of the canary's smoke tests: the deployed stack, read from its outputs file."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stack import Stack

# Every request has a deadline: a hung stack fails its test instead of stalling the canary.
TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack.load()


@pytest.fixture(scope="session")
def http() -> httpx.Client:
    with httpx.Client(timeout=TIMEOUT_S) as client:
        yield client
