"""The Grafana dashboard's queries: each parses (promtool), reads only recording rules that
alerts.yaml defines, and, against a real Prometheus scraping a real gateway, llama-server and
ai_exporter after real traffic, evaluates without error and returns data. The runbook's PromQL
(its `observability/promq` commands) runs against the same Prometheus."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import pytest
import requests
import yaml
from obs_stack import (
    LLAMA_SERVER,
    PROMETHEUS_DIR,
    ROOT,
    SMOLLM2,
    exporter,
    free_port,
    gateway,
    llama_server,
    prometheus,
    query,
    render_local_config,
    wait_for,
)

DASHBOARD = json.loads((ROOT / "observability/grafana/llm-canary.json").read_text())
RULES = yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())
RECORDED = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
# Grafana variables as "All" selects them.
VARIABLES = {"$backend": ".*", "${backend}": ".*"}
MODEL = "smollm2"
LLAMACPP_KEY = "obs-llamacpp-key-0123456789"
GATEWAY_KEY = "obs-gateway-key-0123456789"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expression with Grafana's variables replaced) for every query of every panel."""
    found = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], expr))
    return found


QUERIES = panel_queries()


def test_every_panel_has_a_query_on_the_templated_prometheus():
    panels = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("requests per second", "p95", "p99", "error", "budget", "first token", "tokens per second"):
        assert topic in titles, topic
    assert "model loaded" in titles and "memory" in titles and "by backend" in titles
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), panel["title"]
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
    assert {v["name"] for v in DASHBOARD["templating"]["list"]} == {"datasource", "backend"}


def test_latency_panels_draw_the_2_second_objective():
    latency = [
        p for p in DASHBOARD["panels"] if "latency" in p["title"].lower() and p["type"] == "timeseries"
    ]
    assert latency
    for panel in latency:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert any(step["value"] == 2 for step in steps), panel["title"]


def test_every_query_parses_and_reads_only_defined_recording_rules(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for index, (title, expr) in enumerate(QUERIES):
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr):
            assert name in RECORDED, f"{title}: {name} is not recorded in alerts.yaml"
        rules["groups"][0]["rules"].append({"record": f"dashboard:query_{index}:check", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_broken_query_is_caught_by_the_parse_check(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": "sum(rate(x[5m])"}]}]})
    )
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0


# -- Live: a real Prometheus on real data ----------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    for path in (LLAMA_SERVER, SMOLLM2):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make setup`")
    work = tmp_path_factory.mktemp("live")
    started = []

    def start(process):
        started.append(process)
        return process.start(work)

    try:
        llama = start(llama_server(LLAMACPP_KEY, MODEL))
        dead_port = free_port()  # nothing listens: the first backend fails over every time
        backends = [
            {"name": "dead-1", "url": f"http://127.0.0.1:{dead_port}", "kind": "llamacpp", "models": [MODEL]},
            {
                "name": "llamacpp-1",
                "url": llama.url,
                "kind": "llamacpp",
                "models": [MODEL],
                "api_key": LLAMACPP_KEY,
                "priority": 1,
            },
        ]
        backends[0]["priority"] = 0
        gw = start(gateway(backends, GATEWAY_KEY))
        exp = start(exporter(work, llama.url, LLAMACPP_KEY, MODEL))
        key_file = work / "secrets" / "llamacpp_api_key"
        key_file.parent.mkdir()
        key_file.write_text(LLAMACPP_KEY + "\n")
        key_file.chmod(0o600)
        # The shipped rules, with LLMModelNotLoaded's for: shortened in this copy only (override_for.py).
        shorten = ["--for", "3s", "--alert", "LLMModelNotLoaded"]
        subprocess.run(
            [
                sys.executable,
                str(PROMETHEUS_DIR / "override_for.py"),
                str(PROMETHEUS_DIR / "alerts.yaml"),
                work / "alerts.yaml",
                *shorten,
            ],
            check=True,
            timeout=60,
        )
        config = render_local_config(
            work,
            {
                "observability_scrape_interval": "1s",
                "observability_evaluation_interval": "1s",
                "observability_gateway_target": f"127.0.0.1:{gw.port}",
                "observability_llamacpp_target": f"127.0.0.1:{llama.port}",
                "observability_ai_exporter_target": f"127.0.0.1:{exp.port}",
            },
        )
        assert LLAMACPP_KEY not in config.read_text()
        prom = start(prometheus(config, work / "data"))
        yield {"work": work, "prometheus": prom, "gateway": gw, "llama": llama}
    finally:
        for process in reversed(started):
            process.stop()


def _chat(gw, stream: bool, model: str = MODEL) -> requests.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 8,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return requests.post(
        f"{gw.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        timeout=60,
    )


@pytest.fixture(scope="module")
def traffic(live):
    """Requests spread over several scrapes: plain and streamed answers, and a 404 (rejected)."""
    prom = live["prometheus"].url

    def all_up():
        result = query(prom, "up")["data"]["result"]
        return len(result) == 3 and all(r["value"][1] == "1" for r in result)

    assert wait_for(all_up, 30), query(prom, "up")
    statuses = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        statuses.append(_chat(live["gateway"], stream=False).status_code)
        statuses.append(_chat(live["gateway"], stream=True).status_code)
        statuses.append(_chat(live["gateway"], stream=False, model="no-such-model").status_code)
    assert statuses.count(200) >= 4 and 404 in statuses, statuses
    return statuses


def _has_data(answer: dict) -> bool:
    if answer.get("status") != "success":
        return False
    result = answer["data"]["result"]
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_scrape_targets_are_up_including_llama_server_with_its_key(live, traffic):
    result = query(live["prometheus"].url, "up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in result} == {
        "gateway": "1",
        "llamacpp": "1",
        "ai_exporter": "1",
    }


def test_every_panel_query_evaluates_and_returns_data(live, traffic):
    prom = live["prometheus"].url
    missing: list[str] = []

    def all_have_data() -> bool:
        missing.clear()
        for title, expr in QUERIES:
            answer = query(prom, expr)
            assert answer["status"] == "success", f"{title}: {expr}: {answer.get('error')}"
            if not _has_data(answer):
                missing.append(f"{title}: {expr}")
        return not missing

    assert wait_for(all_have_data, 45, interval=2), "no data for:\n" + "\n".join(missing)


def test_the_slis_read_the_traffic(live, traffic):
    prom = live["prometheus"].url
    p95 = float(
        query(prom, 'slo:ai_request_latency_seconds:quantile_rate5m{quantile="0.95"}')["data"]["result"][0][
            "value"
        ][1]
    )
    assert 0 < p95 < 30
    # The error SLI counts exactly the answers that were 5xx: none, no error and the whole budget
    # left; some (a busy machine can time a request out), an error ratio above 0.
    errors = float(query(prom, "slo:ai_request_errors:ratio_rate5m")["data"]["result"][0]["value"][1])
    budget = float(query(prom, "slo:ai_availability:error_budget_remaining")["data"]["result"][0]["value"][1])
    if any(status >= 500 for status in traffic):
        assert errors > 0 and budget < 1, traffic
    else:
        assert (errors, budget) == (0, 1), traffic
    loaded = query(prom, 'ai_model_loaded{backend="llamacpp-1"}')["data"]["result"]
    assert loaded and loaded[0]["value"][1] == "1"
    failovers = query(prom, 'ai_failovers_total{backend="dead-1"}')["data"]["result"]
    assert failovers and float(failovers[0]["value"][1]) >= 1


def runbook_promq_commands() -> list[str]:
    """Every `observability/promq ...` command of docs/runbook.md's sh blocks (continuations joined)."""
    text = (ROOT / "docs/runbook.md").read_text()
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for command in block.replace("\\\n", " ").splitlines():
            if command.startswith("observability/promq "):
                commands.append(command)
    return commands


def test_the_runbooks_promql_is_accepted_by_prometheus(live, traffic):
    commands = runbook_promq_commands()
    assert len(commands) >= 8
    env = {**os.environ, "PROMETHEUS_URL": live["prometheus"].url}
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
        assert "promq:" not in done.stderr


def test_promq_fails_on_an_expression_prometheus_refuses(live):
    env = {**os.environ, "PROMETHEUS_URL": live["prometheus"].url}
    done = subprocess.run(
        [str(ROOT / "observability/promq"), "sum(rate(up[5m])"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "promq:" in done.stderr


def _model_alerts(prometheus_url: str) -> dict[tuple[str, str], str]:
    """(job, backend) -> state of each LLMModelNotLoaded alert Prometheus has now."""
    alerts = requests.get(f"{prometheus_url}/api/v1/alerts", timeout=30).json()["data"]["alerts"]
    return {
        (a["labels"]["job"], a["labels"]["backend"]): a["state"]
        for a in alerts
        if a["labels"]["alertname"] == "LLMModelNotLoaded" and a["labels"].get("model") == MODEL
    }


def test_model_not_loaded_goes_pending_then_firing_and_resolves(live, traffic):
    """Last in this module: stops llama-server, then starts it again."""
    prom, llama = live["prometheus"].url, live["llama"]
    assert ("gateway", "llamacpp-1") not in _model_alerts(prom)
    llama.stop()
    seen: set[str] = set()

    def firing() -> bool:
        state = _model_alerts(prom).get(("gateway", "llamacpp-1"))
        seen.add(state)
        return state == "firing"

    try:
        assert wait_for(firing, 60, interval=0.25), seen
        assert "pending" in seen  # for: holds it back first
        exporter_state = _model_alerts(prom).get(("ai_exporter", "llamacpp"))
        assert exporter_state in ("pending", "firing")  # the host's exporter sees it too
    finally:
        llama.start(live["work"])
    assert wait_for(lambda: not _model_alerts(prom), 60, interval=0.5), _model_alerts(prom)
