"""alerts.yaml against CONTRACTS §6 and its promtool tests: the alert names, labels and annotations,
the shipped `for:` limits, runbook_url anchors that exist in docs/runbook.md, a firing and a quiet
test per alert in alerts.test.yaml, and tests that fail when an alert is broken (never fires or
always fires). Also override_for.py, the test-only shortening of `for:`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml
from obs_stack import PROMETHEUS_DIR, ROOT

RULES = yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())
ALERTS = [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]
TESTS = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yaml").read_text())
CONTRACT_ALERTS = {
    "LLMGatewayLatencyP95High",
    "LLMModelNotLoaded",
    "LLMMemoryPressure",
    "LLMAvailabilityBudgetBurn",
    "LLMScrapeTargetDown",
}
MAX_FOR_S = {"LLMGatewayLatencyP95High": 600, "LLMMemoryPressure": 600, "LLMModelNotLoaded": 300}


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([smh])", duration))


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of the headings: lower case, punctuation dropped, spaces to dashes."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M):
        anchors.add(re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def promtool_test(rules_text: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "alerts.yaml").write_text(rules_text)
    shutil.copy(PROMETHEUS_DIR / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    return subprocess.run(
        ["promtool", "test", "rules", str(tmp_path / "alerts.test.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_alerts_exist_and_nothing_else():
    assert {a["alert"] for a in ALERTS} == CONTRACT_ALERTS


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
def test_every_alert_has_severity_summary_description_and_a_runbook_anchor(rule):
    assert rule["labels"]["severity"] in ("page", "ticket")
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert "$value" in annotations["description"]
    url = annotations["runbook_url"]
    assert url == f"docs/runbook.md#{rule['alert'].lower()}"
    assert url.split("#")[1] in github_anchors((ROOT / "docs/runbook.md").read_text())


def test_shipped_for_durations_stay_within_the_contract():
    for rule in ALERTS:
        limit = MAX_FOR_S.get(rule["alert"])
        if limit is not None:
            assert seconds(rule["for"]) <= limit, rule["alert"]
        assert seconds(rule["for"]) >= 60, (
            f"{rule['alert']}: a shipped for: under a minute is a test override"
        )


def test_budget_burn_pages_and_tickets_with_the_sre_workbook_windows():
    burn = {r["labels"]["severity"]: r["expr"] for r in ALERTS if r["alert"] == "LLMAvailabilityBudgetBurn"}
    assert "ratio_rate1h > (14.4 * 0.005)" in burn["page"] and "ratio_rate5m > (14.4 * 0.005)" in burn["page"]
    assert "ratio_rate6h > (6 * 0.005)" in burn["ticket"] and "ratio_rate30m > (6 * 0.005)" in burn["ticket"]


def test_every_alert_has_a_firing_and_a_quiet_promtool_test():
    firing, quiet = set(), set()
    for test in TESTS["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == CONTRACT_ALERTS
    assert quiet == CONTRACT_ALERTS
    names = " ".join(t["name"] for t in TESTS["tests"])
    assert names.count("quiet period") >= 2


def test_promtool_accepts_the_rules_and_their_tests(tmp_path):
    checked = subprocess.run(
        ["promtool", "check", "rules", str(PROMETHEUS_DIR / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool_test((PROMETHEUS_DIR / "alerts.yaml").read_text(), tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("alert", sorted(CONTRACT_ALERTS))
@pytest.mark.parametrize("broken", ["vector(1) < 0", "vector(1)"], ids=["never-fires", "always-fires"])
def test_the_promtool_tests_fail_when_an_alert_is_broken(alert, broken, tmp_path):
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = broken
    tested = promtool_test(yaml.safe_dump(rules, sort_keys=False), tmp_path)
    assert tested.returncode != 0, f"promtool tests still pass with {alert} as {broken!r}"
    assert alert in tested.stdout + tested.stderr


def test_a_quiet_period_yields_no_ratio_rather_than_a_division_by_zero():
    recorded = {r["record"]: r["expr"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
    for name, expr in recorded.items():
        if ":ratio_rate" in name and name.startswith("slo:ai_request_errors"):
            assert re.search(r"\[[0-9]+[mhd]\]\)\) > 0\)\s*$", expr), name


def run_override(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROMETHEUS_DIR / "override_for.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_override_for_shortens_only_the_named_alert_in_a_copy(tmp_path):
    shipped = (PROMETHEUS_DIR / "alerts.yaml").read_text()
    dest = tmp_path / "alerts.yaml"
    done = run_override(
        str(PROMETHEUS_DIR / "alerts.yaml"), str(dest), "--for", "10s", "--alert", "LLMModelNotLoaded"
    )
    assert done.returncode == 0, done.stderr
    copy = yaml.safe_load(dest.read_text())
    durations = {
        (r["alert"], r["labels"]["severity"], r["expr"]): r["for"]
        for g in copy["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    originals = {(r["alert"], r["labels"]["severity"], r["expr"]): r["for"] for r in ALERTS}
    for key, duration in durations.items():
        assert duration == ("10s" if key[0] == "LLMModelNotLoaded" else originals[key]), key
    assert (PROMETHEUS_DIR / "alerts.yaml").read_text() == shipped
    checked = subprocess.run(
        ["promtool", "check", "rules", str(dest)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_override_for_refuses_the_shipped_folder_and_unknown_alerts(tmp_path):
    src = str(PROMETHEUS_DIR / "alerts.yaml")
    refused = run_override(src, src, "--for", "10s")
    assert refused.returncode != 0 and "refusing" in refused.stderr
    refused = run_override(src, str(PROMETHEUS_DIR / "short.yaml"), "--for", "10s")
    assert refused.returncode != 0 and not (PROMETHEUS_DIR / "short.yaml").exists()
    unknown = run_override(src, str(tmp_path / "x.yaml"), "--for", "10s", "--alert", "NoSuchAlert")
    assert unknown.returncode != 0 and "NoSuchAlert" in unknown.stderr
    bad = run_override(src, str(tmp_path / "x.yaml"), "--for", "soon")
    assert bad.returncode != 0 and "duration" in bad.stderr
