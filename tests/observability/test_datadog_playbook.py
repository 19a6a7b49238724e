"""playbooks/datadog.yml against the fake Datadog API (tests/fakes/datadog): the skip without keys,
what community.general.datadog_monitor sends (validated by the fake as Datadog does), check mode
(nothing written), changed=0 on a rerun, drift repaired, and API errors surfaced without keys."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fakes" / "datadog"))

from fake_datadog import FakeDatadog  # noqa: E402

API_KEY = "dd-api-key-never-logged-0123456789"
APP_KEY = "dd-app-key-never-logged-abcdef0123456789"
MONITORS = yaml.safe_load((ROOT / "observability/datadog/monitors.yaml").read_text())["datadog_monitors"]
NAMES = {m["name"] for m in MONITORS}
NOTIFY = {"datadog_notify": {"page": "@pagerduty-llm", "ticket": "@slack-tickets"}}


@pytest.fixture
def datadog():
    fake = FakeDatadog(API_KEY, APP_KEY)
    fake.base_url = fake.serve()
    yield fake
    fake.close()


def play(datadog, extra_vars=None, env=None, options=()):
    """Run playbooks/datadog.yml; returns (returncode, output, recap counts for localhost)."""
    variables = {"datadog_api_host": datadog.base_url, **(extra_vars or {})}
    environment = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    for name in ("DD_API_KEY", "DD_APP_KEY", "DATADOG_HOST", "DATADOG_API_KEY", "DATADOG_APP_KEY"):
        environment.pop(name, None)
    environment.update(env if env is not None else {"DD_API_KEY": API_KEY, "DD_APP_KEY": APP_KEY})
    done = subprocess.run(
        ["ansible-playbook", "-v", *options, "playbooks/datadog.yml", "-e", json.dumps(variables)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output)
    counts = dict(zip(("ok", "changed", "failed"), map(int, recap.groups()), strict=True)) if recap else {}
    assert API_KEY not in output and APP_KEY not in output
    return done.returncode, output, counts


def test_without_keys_the_play_is_skipped_saying_why(datadog):
    code, output, _ = play(datadog, env={"DD_APP_KEY": APP_KEY})
    assert code == 0, output
    assert "Skipping the Datadog monitors: no Datadog API key" in output
    assert datadog.requests == []


def test_check_mode_writes_nothing_and_says_what_it_would_create(datadog):
    code, output, counts = play(datadog, options=("--check",))
    assert code == 0, output
    assert counts["failed"] == 0
    assert datadog.writes() == []
    assert [(r.method, r.path) for r in datadog.requests] == [("GET", "/api/v1/monitor")]
    assert "datadog_monitor does not support check mode" in output
    assert all(f"- create {name}\n" in output for name in NAMES), output
    assert "update (if different)" not in output


def test_apply_then_rerun_and_check_mode_change_nothing_and_drift_is_repaired(datadog):
    code, output, counts = play(datadog, NOTIFY)
    assert code == 0, output
    assert counts["changed"] == 2  # the monitors, then the composites
    assert all(r.api_key_ok and r.app_key_ok for r in datadog.requests)
    stored = datadog.by_name()
    assert set(stored) == NAMES
    ids = {m["key"]: stored[m["name"]]["id"] for m in MONITORS}
    for monitor in MONITORS:
        sent = stored[monitor["name"]]
        assert sent["type"] == monitor["type"]
        assert f"monitor:{monitor['key']}" in sent["tags"] and "service:llm-canary" in sent["tags"]
        assert "[[" not in sent["message"]  # Datadog's {{var}} templates, as the module converts them
        if monitor["type"] == "composite":
            assert sent["query"] == " && ".join(str(ids[key]) for key in monitor["composite_of"])
        else:
            assert sent["query"] == monitor["query"]
            assert sent["options"]["thresholds"] == monitor["thresholds"]
    page = stored["[llm-canary] Model not loaded"]
    assert page["message"].endswith("@pagerduty-llm")
    assert "{{#is_alert}}" in page["message"] and "docs/runbook.md#llmmodelnotloaded" in page["message"]
    assert stored["[llm-canary] Memory pressure"]["message"].endswith("@slack-tickets")
    assert "@" not in stored["[llm-canary] Availability burn 14.4x (1 h window)"]["message"]
    assert stored["[llm-canary] Metrics endpoint down"]["options"]["notify_no_data"] is True
    creates = [r for r in datadog.writes() if r.method == "POST"]
    assert len(creates) == len(MONITORS)

    code, output, counts = play(datadog, NOTIFY)
    assert code == 0, output
    assert counts["changed"] == 0, output
    assert {r.method for r in datadog.writes()[len(creates) :]} <= {"PUT"}  # found by name: no duplicate
    assert set(datadog.by_name()) == NAMES

    seen = len(datadog.requests)
    code, output, counts = play(datadog, options=("--check",))
    assert code == 0, output
    assert [(r.method, r.path) for r in datadog.requests[seen:]] == [("GET", "/api/v1/monitor")]
    assert all(f"- update (if different) {name}\n" in output for name in NAMES), output
    assert "- create " not in output

    # Someone edits a monitor by hand: the next run puts it back.
    monitor = datadog.by_name()["[llm-canary] Gateway p95 latency over 2 s"]
    monitor["query"] = monitor["query"].replace("> 2", "> 5")
    monitor["options"]["thresholds"] = {"critical": 5}
    code, output, counts = play(datadog, NOTIFY)
    assert code == 0, output
    assert counts["changed"] == 1
    repaired = datadog.by_name()["[llm-canary] Gateway p95 latency over 2 s"]
    assert repaired["query"].endswith("> 2")
    assert repaired["options"]["thresholds"] == {"critical": 2, "warning": 1.5}


def test_a_query_datadog_would_refuse_fails_the_play_with_its_error(datadog):
    broken = [{**MONITORS[0], "thresholds": {"critical": 3}}]
    code, output, _ = play(datadog, {"datadog_monitors": broken})
    assert code != 0
    assert "Alert threshold (3) does not match that used in the query (2)" in output
    assert datadog.monitors == {}


def test_wrong_keys_fail_without_writing_or_showing_them(datadog):
    code, output, _ = play(datadog, env={"DD_API_KEY": "wrong-api-key-0123456789", "DD_APP_KEY": APP_KEY})
    assert code != 0
    assert "Forbidden" in output
    assert datadog.writes() == []
    assert "wrong-api-key-0123456789" not in output
