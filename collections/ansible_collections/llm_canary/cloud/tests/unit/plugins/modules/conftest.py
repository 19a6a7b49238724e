# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the cloudflare_* module tests: the fake Cloudflare API and an in-process module runner."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

# The fake lives with the project's other fakes (tests/fakes/cloudflare/ at the repository root).
REPO_ROOT = Path(__file__).resolve().parents[8]
sys.path.insert(0, str(REPO_ROOT / "tests" / "fakes" / "cloudflare"))

from fake_cloudflare import FakeCloudflare  # noqa: E402

TOKEN = "cf-test-token-0123456789"
ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def cloudflare():
    fake = FakeCloudflare(TOKEN, ACCOUNT)
    fake.zones.add(ZONE)
    fake.base_url = fake.serve()
    yield fake
    fake.close()


@pytest.fixture
def sleeps(monkeypatch):
    """Retry waits are recorded instead of slept."""
    recorded = []
    from ansible_collections.llm_canary.cloud.plugins.module_utils import cloudflare as cloudflare_utils

    monkeypatch.setattr(cloudflare_utils.time, "sleep", recorded.append)
    return recorded


def run_module_once(module, args, check_mode=False):
    """Run a module's main() in-process; returns its result dict (with `failed` on fail_json)."""

    def leave(self, **result):
        raise ModuleExit(result)

    def fail(self, msg, **result):
        raise ModuleExit({**result, "failed": True, "msg": msg})

    full_args = {**args, "_ansible_check_mode": check_mode, "_ansible_diff": True}
    with (
        patch_module_args(full_args),
        mock.patch.object(basic.AnsibleModule, "exit_json", leave),
        mock.patch.object(basic.AnsibleModule, "fail_json", fail),
    ):
        try:
            module.main()
        except ModuleExit as exit_:
            return exit_.result
    raise AssertionError("the module returned without exit_json or fail_json")


@pytest.fixture
def run_module():
    return run_module_once
