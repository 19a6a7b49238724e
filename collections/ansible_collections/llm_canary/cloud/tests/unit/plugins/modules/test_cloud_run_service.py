# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cloud_run_service against its case table (cloud_run_service.yaml)."""

from __future__ import annotations

import pytest
from ansible_collections.llm_canary.cloud.plugins.modules import cloud_run_service
from gcp_cases import load, run_case

ROOT, DEFAULTS, CASES = load("cloud_run_service")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, run_module, monkeypatch):
    run_case(cloud_run_service, run_module, monkeypatch, ROOT, DEFAULTS, case)
