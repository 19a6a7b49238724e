"""playbooks/edge.yml end to end against the fake Cloudflare API (tests/fakes/cloudflare): the skip
without credentials, checks that fail before any API call, a deploy, and changed=0 on a rerun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fakes" / "cloudflare"))

from fake_cloudflare import FakeCloudflare  # noqa: E402

TOKEN = "cf-playbook-token-0123456789"
ACCOUNT = "0123456789abcdef0123456789abcdef"
GATEWAY_KEY = "gateway-key-never-logged"
JWT_SECRET = "jwt-secret-never-logged-0123456789abcdef"
VALID = {
    "edge_cloudflare_account_id": ACCOUNT,
    "edge_cloudflare_api_token": TOKEN,
    "edge_upstream_url": "https://gateway.example.test",
    "edge_upstream_api_key": GATEWAY_KEY,
    "edge_jwt_secret": JWT_SECRET,
    "edge_jwt_issuer": "https://issuer.example.test",
    "edge_rate_limit_mode": "do",
}


@pytest.fixture
def cloudflare():
    fake = FakeCloudflare(TOKEN, ACCOUNT)
    url = fake.serve()
    fake.base_url = url
    yield fake
    fake.close()


def play(cloudflare, extra_vars, env=None, options=()):
    """Run playbooks/edge.yml; returns (returncode, output, recap counts for localhost)."""
    variables = {"edge_cloudflare_api_base_url": cloudflare.base_url, **extra_vars}
    environment = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    for name in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_BASE_URL"):
        environment.pop(name, None)
    environment.update(env or {})
    done = subprocess.run(
        ["ansible-playbook", "-v", *options, "playbooks/edge.yml", "-e", json.dumps(variables)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output)
    counts = dict(zip(("ok", "changed", "failed"), map(int, recap.groups()), strict=True)) if recap else {}
    return done.returncode, output, counts


def test_without_credentials_the_play_is_skipped_saying_why(cloudflare):
    code, output, _ = play(cloudflare, {"edge_cloudflare_account_id": "", "edge_cloudflare_api_token": ""})
    assert code == 0, output
    assert "Skipping the edge Worker: no Cloudflare account ID" in output
    assert cloudflare.requests == []


def test_without_a_token_the_play_is_skipped_saying_why(cloudflare):
    code, output, _ = play(cloudflare, {**VALID, "edge_cloudflare_api_token": ""})
    assert code == 0, output
    assert "no Cloudflare API token" in output
    assert cloudflare.requests == []


def test_short_jwt_secret_fails_naming_the_variable_before_any_call(cloudflare):
    code, output, _ = play(cloudflare, {**VALID, "edge_jwt_secret": "short"})
    assert code != 0
    assert "edge_jwt_secret" in output
    assert cloudflare.requests == []


def test_upstream_url_with_v1_fails_naming_the_variable(cloudflare):
    code, output, _ = play(cloudflare, {**VALID, "edge_upstream_url": "https://gateway.example.test/v1"})
    assert code != 0
    assert "edge_upstream_url must be the gateway's base URL without /v1" in output
    assert cloudflare.requests == []


def test_deploy_then_rerun_reports_no_change(cloudflare):
    code, output, counts = play(cloudflare, VALID)
    assert code == 0, output
    assert counts["changed"] == 1
    script = cloudflare.scripts["llm-canary-edge"]
    assert script.secrets == {"UPSTREAM_API_KEY": GATEWAY_KEY, "JWT_SECRET": JWT_SECRET}
    assert script.classes == {"RateLimiter"}
    assert "https://llm-canary-edge.canary-test.workers.dev" in output

    code, output, counts = play(cloudflare, VALID)
    assert code == 0, output
    assert counts["changed"] == 0, output


def test_account_and_token_come_from_the_environment(cloudflare):
    variables = {k: v for k, v in VALID.items() if not k.startswith("edge_cloudflare_")}
    environment = {"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": TOKEN}
    code, output, counts = play(cloudflare, variables, env=environment)
    assert code == 0, output
    assert counts["changed"] == 1
    assert "llm-canary-edge" in cloudflare.scripts
    assert TOKEN not in output


def test_check_mode_reports_the_change_and_deploys_nothing(cloudflare):
    code, output, counts = play(cloudflare, VALID, options=("--check", "--diff"))
    assert code == 0, output
    assert counts["changed"] == 1
    assert cloudflare.scripts == {}
    assert [r.method for r in cloudflare.requests if r.method != "GET"] == []
    # --diff is where a secret would most likely show.
    for secret in (GATEWAY_KEY, JWT_SECRET, TOKEN):
        assert secret not in output


def test_secrets_never_reach_the_output(cloudflare):
    code, output, _ = play(cloudflare, VALID)
    assert code == 0, output
    assert GATEWAY_KEY not in output
    assert JWT_SECRET not in output
    assert TOKEN not in output
