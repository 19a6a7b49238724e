"""The Cloud Run gateway (playbooks/gateway.yml on GCP, then the edge play) against the fake GCP
and Cloudflare APIs: fresh deploy, unchanged rerun, canary revisions, promotion, roll back, split,
check mode, faults."""

from __future__ import annotations

import time

import pytest
from gateway_helpers import SECRETS, GatewayCloud, assert_no_secret_in, outputs


@pytest.fixture
def gw(tmp_path):
    cloud = GatewayCloud(tmp_path)
    yield cloud
    cloud.stop()


def test_fresh_deploy(gw):
    start = time.monotonic()
    result = gw.deploy()
    assert result.rc == 0, result.output[-5000:]
    print(f"fresh deploy {time.monotonic() - start:.1f}s")
    service = gw.service()
    (revision,) = gw.revisions()
    assert gw.traffic() == {revision: (100, "canary")}
    container = service["template"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["GATEWAY_METRICS"]["value"] == "true"
    for name in ("GATEWAY_API_KEYS", "GATEWAY_BACKENDS"):
        assert "value" not in env[name] and env[name]["valueSource"]["secretKeyRef"]["version"] == "1"
    assert service["template"]["vpcAccess"] == {
        "networkInterfaces": [{"network": "llm-canary", "subnetwork": "llm-canary-us-central1"}],
        "egress": "PRIVATE_RANGES_ONLY",
    }
    assert service["template"]["serviceAccount"] == "llm-canary-gateway@canary-test.iam.gserviceaccount.com"
    assert gw.secret_versions() == {s: 1 for s in SECRETS}
    for secret in gw.state.secrets.values():
        bindings = secret["_policy"]["_body"]["bindings"]
        assert bindings == [
            {
                "role": "roles/secretmanager.secretAccessor",
                "members": ["serviceAccount:llm-canary-gateway@canary-test.iam.gserviceaccount.com"],
            }
        ]
    assert len(gw.state.builds) == 1 and container["image"].split("@")[1].startswith("sha256:")
    assert outputs(gw)["gateway_url"] == service["uri"]
    assert gw.worker_upstream() == service["uri"]
    assert_no_secret_in(result.output)


def test_unchanged_rerun_writes_nothing(gw):
    assert gw.deploy().rc == 0
    before = (gw.revisions(), gw.secret_versions(), len(gw.state.builds), len(gw.api_writes()))
    rerun = gw.deploy()
    assert rerun.rc == 0, rerun.output[-5000:]
    assert rerun.changed == 0, rerun.output[-5000:]
    assert (gw.revisions(), gw.secret_versions(), len(gw.state.builds), len(gw.api_writes())) == before
