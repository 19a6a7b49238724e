"""Fixtures of the canary's smoke tests: the deployed stack, read from its outputs file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from stack import Stack

# Every request has a deadline: a hung stack fails its test instead of stalling the canary.
TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack.load()


class TimeoutSession(requests.Session):
    """A session whose every request has the deadline."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT_S)
        return super().request(*args, **kwargs)


@pytest.fixture(scope="session")
def http() -> requests.Session:
    with TimeoutSession() as session:
        yield session
