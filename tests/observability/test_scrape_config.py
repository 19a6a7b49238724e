"""The scrape configurations: the local template renders (with its defaults and with every
variable set) into a configuration promtool accepts, keeps llama-server's key in a file, and the
GCP configuration accepts file_sd files of the shape its header documents. Also: the runbook's
sh blocks are valid shell and name the local stack's parts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml
from obs_stack import PROMETHEUS_DIR, ROOT, render_local_config

LOCAL_VARIABLES = {
    "observability_scrape_interval": "15s",
    "observability_evaluation_interval": "30s",
    "observability_rule_files": ["alerts.yaml", "extra/*.yaml"],
    "observability_gateway_target": "10.89.42.5:8080",
    "observability_llamacpp_target": "10.89.42.11:8080",
    "observability_llamacpp_api_key_file": "/etc/prometheus/llamacpp-key",
    "observability_ai_exporter_target": "10.89.42.11:9101",
}


def promtool_check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )


def prepare(tmp_path):
    shutil.copy(PROMETHEUS_DIR / "alerts.yaml", tmp_path / "alerts.yaml")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "llamacpp_api_key").write_text("key\n")


def test_local_template_defaults_render_a_valid_configuration(tmp_path):
    prepare(tmp_path)
    config = render_local_config(tmp_path, {})
    checked = promtool_check_config(config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    parsed = yaml.safe_load(config.read_text())
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert set(jobs) == {"gateway", "llamacpp", "ai_exporter"}
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["gateway:8080"]
    assert jobs["llamacpp"]["static_configs"][0]["targets"] == ["llm-canary-llamacpp-1:8080"]
    assert jobs["ai_exporter"]["static_configs"][0]["targets"] == ["llm-canary-llamacpp-1:9101"]
    assert jobs["llamacpp"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "secrets/llamacpp_api_key",
    }
    assert parsed["rule_files"] == ["alerts.yaml"]


def test_local_template_takes_every_variable(tmp_path):
    prepare(tmp_path)
    (tmp_path / "extra").mkdir()
    config = render_local_config(tmp_path, LOCAL_VARIABLES)
    parsed = yaml.safe_load(config.read_text())
    assert parsed["global"]["scrape_interval"] == "15s" and parsed["global"]["evaluation_interval"] == "30s"
    assert parsed["rule_files"] == ["alerts.yaml", "extra/*.yaml"]
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["10.89.42.5:8080"]
    assert jobs["llamacpp"]["static_configs"][0]["targets"] == ["10.89.42.11:8080"]
    assert jobs["llamacpp"]["authorization"]["credentials_file"] == "/etc/prometheus/llamacpp-key"
    assert jobs["ai_exporter"]["static_configs"][0]["targets"] == ["10.89.42.11:9101"]


def test_local_template_without_a_llamacpp_key_sends_none(tmp_path):
    prepare(tmp_path)
    config = render_local_config(tmp_path, {"observability_llamacpp_api_key_file": ""})
    assert promtool_check_config(config).returncode == 0
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert "authorization" not in jobs["llamacpp"]


def test_gcp_configuration_reads_file_sd_files_of_the_documented_shape(tmp_path):
    shutil.copy(PROMETHEUS_DIR / "prometheus-gcp.yml", tmp_path / "prometheus.yml")
    prepare(tmp_path)
    header = (PROMETHEUS_DIR / "prometheus-gcp.yml").read_text()
    examples = dict(re.findall(r"^#\s+targets/(\w+)\.json\s+(\[.*\])$", header, flags=re.M))
    assert set(examples) == {"gateway", "ai_exporter", "llamacpp"}
    (tmp_path / "targets").mkdir()
    for job, text in examples.items():
        groups = json.loads(text)
        assert all(set(g) <= {"targets", "labels"} and g["targets"] for g in groups), job
        (tmp_path / "targets" / f"{job}.json").write_text(json.dumps(groups))
    checked = promtool_check_config(tmp_path / "prometheus.yml")
    assert checked.returncode == 0 and "WARNING" not in checked.stdout + checked.stderr, (
        checked.stdout + checked.stderr
    )
    jobs = {job["job_name"]: job for job in yaml.safe_load(header)["scrape_configs"]}
    assert jobs["gateway"]["scheme"] == "https"
    assert jobs["llamacpp"]["authorization"]["credentials_file"] == "secrets/llamacpp_api_key"


def runbook_sh_blocks() -> list[str]:
    text = (ROOT / "docs/runbook.md").read_text()
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_runbook_sh_blocks_are_valid_shell_for_the_local_stack():
    blocks = runbook_sh_blocks()
    assert len(blocks) >= 15
    for block in blocks:
        parsed = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=30)
        assert parsed.returncode == 0, f"{block}\n{parsed.stderr}"
    commands = "\n".join(blocks)
    for name in ("llm-canary-llamacpp-1", "llm-canary-gateway", "llm-canary-worker", "llm-canary-prometheus"):
        assert name in commands, name
    assert "llama-server.service" in commands
    for key in re.findall(r"jq -r \.(\w+) outputs/local\.json", commands):
        assert key in {
            "gateway_url",
            "llamacpp_url",
            "worker_url",
            "prometheus_url",
            "llamacpp_api_key_file",
            "model_ca_file",
        }, key
    assert "gcloud" not in commands  # GCP commands live in console blocks, which the local test skips


def test_runbook_covers_every_alert_and_symptom():
    text = (ROOT / "docs/runbook.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for name in (
        "LLMGatewayLatencyP95High",
        "LLMModelNotLoaded",
        "LLMMemoryPressure",
        "LLMAvailabilityBudgetBurn",
        "LLMScrapeTargetDown",
        "Failover storm (one backend flapping)",
        "Worker 401/429 spikes",
        "GPU lost after a kernel update",
        "Failed canary",
    ):
        assert name in headings, name
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        assert "**Shows as:**" in section and "**Fix:**" in section and "```sh" in section, section[:60]
