"""The Cloud Run gateway (playbooks/gateway.yml on GCP, then the edge play) against the fake GCP
and Cloudflare APIs: fresh deploy, unchanged rerun, canary revisions, promotion, roll back, split,
check mode, faults."""

from __future__ import annotations

import json
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
    # The VMs' CA: its PEM in Secret Manager, version 1 mounted as a file that SSL_CERT_FILE names.
    assert gw.model_ca_versions() == [gw.model_ca.read_text()]
    assert service["template"]["volumes"] == [
        {
            "name": "model-ca",
            "secret": {
                "secret": "llm-canary-gateway-model-ca",
                "items": [{"path": "ca.crt", "version": "1"}],
            },
        }
    ]
    assert container["volumeMounts"] == [{"name": "model-ca", "mountPath": "/etc/llm-canary/model-ca"}]
    assert env["SSL_CERT_FILE"] == {"name": "SSL_CERT_FILE", "value": "/etc/llm-canary/model-ca/ca.crt"}
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


def test_a_new_ca_is_a_new_revision_that_mounts_its_version(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    pem = gw.new_model_ca()
    result = gw.deploy(gateway_promotion="never")
    assert result.rc == 0, result.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert gw.model_ca_versions()[-1] == pem and len(gw.model_ca_versions()) == 2
    (volume,) = gw.state.revisions[f"{gw.service()['name']}/revisions/{second}"]["volumes"]
    assert volume["secret"]["items"] == [{"path": "ca.crt", "version": "2"}]
    assert gw.traffic() == {first: (100, ""), second: (0, "canary")}


def test_a_missing_ca_stops_the_gateway_before_cloud_run_naming_hosts_tls_ca_file(gw):
    result = gw.deploy(hosts_tls_ca_file=str(gw.model_ca.parent / "missing.crt"))
    assert result.rc != 0
    assert "hosts_tls_ca_file" in result.output and "missing.crt) is not a file" in result.output
    assert not any("run.googleapis.com" in w or "gateway-model-ca" in w for w in gw.api_writes())


NEW_IMAGE = "us-central1-docker.pkg.dev/canary-test/llm-canary/gateway@sha256:" + "b" * 64
BROKEN_IMAGE = "us-central1-docker.pkg.dev/canary-test/llm-canary/gateway@sha256:" + "c" * 64


def test_image_change_is_one_tagged_revision_without_traffic_then_promote_and_roll_back(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    changed = gw.deploy(gateway_image=NEW_IMAGE, gateway_promotion="never")
    assert changed.rc == 0, changed.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert len(gw.revisions()) == 2
    assert gw.traffic() == {first: (100, ""), second: (0, "canary")}
    assert len(gw.state.builds) == 1  # a given image is not built
    assert "not promoted: gateway_promotion=never" in changed.output

    promoted = gw.deploy(gateway_image=NEW_IMAGE, gateway_traffic="promote")
    assert promoted.rc == 0, promoted.output[-5000:]
    assert gw.traffic() == {second: (100, "canary"), first: (0, "previous")}
    assert len(gw.revisions()) == 2

    rolled_back = gw.deploy(gateway_image=NEW_IMAGE, gateway_traffic="rollback")
    assert rolled_back.rc == 0, rolled_back.output[-5000:]
    assert gw.traffic() == {first: (100, "previous"), second: (0, "canary")}
    assert len(gw.revisions()) == 2
    assert outputs(gw)["gateway_url"] == gw.service()["uri"]


def test_site_promotes_a_changed_gateway_once_its_tag_url_is_healthy(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    result = gw.deploy(gateway_image=NEW_IMAGE)
    assert result.rc == 0, result.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert gw.traffic() == {second: (100, "canary"), first: (0, "previous")}
    # Its own tag URL was asked first, while it had no traffic.
    assert (second, "/health") in gw.state.served


def test_an_unhealthy_canary_is_not_promoted_and_the_old_revision_keeps_serving(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    gw.state.unhealthy_images.add(BROKEN_IMAGE)
    result = gw.deploy(gateway_image=BROKEN_IMAGE)
    assert result.rc != 0
    assert "/health answered 503" in result.output and f"{first} keeps serving" in result.output
    assert gw.traffic()[first] == (100, "")


def test_ten_percent_split(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    result = gw.deploy(gateway_image=NEW_IMAGE, gateway_canary_percent=10, gateway_promotion="never")
    assert result.rc == 0, result.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert gw.traffic() == {first: (90, ""), second: (10, "canary")}


def test_check_mode_makes_no_mutating_call(gw):
    assert gw.deploy().rc == 0
    writes = len(gw.api_writes())
    revisions = gw.revisions()
    result = gw.deploy(
        check=True, gateway_image=NEW_IMAGE, gateway_env={"GATEWAY_API_KEYS": "another-key-0123"}
    )
    assert result.rc == 0, result.output[-5000:]
    assert len(gw.api_writes()) == writes
    assert gw.revisions() == revisions
    assert "changed: [localhost]" in result.output


def test_check_mode_on_a_fresh_project_makes_no_mutating_call(gw):
    gw.fake.platform.projects["canary-test"].services.update(
        [
            "run.googleapis.com",
            "secretmanager.googleapis.com",
            "artifactregistry.googleapis.com",
            "cloudbuild.googleapis.com",
            "storage.googleapis.com",
        ]
    )
    result = gw.deploy(check=True)
    assert result.rc == 0, result.output[-5000:]
    assert gw.api_writes() == []


def test_a_revision_that_never_becomes_ready_ends_the_play_with_its_reason(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    gw.state.failing_images[BROKEN_IMAGE] = (
        "HEALTH_CHECK_CONTAINER_ERROR",
        "The user-provided container failed the configured startup probe checks.",
    )
    result = gw.deploy(gateway_image=BROKEN_IMAGE)
    assert result.rc != 0
    assert "did not become ready (HEALTH_CHECK_CONTAINER_ERROR)" in result.output
    assert "startup probe checks" in result.output
    assert gw.traffic() == {first: (100, "canary")}
    assert "Edge Worker" not in result.output.split("PLAY RECAP")[0].split("Model gateway on Cloud Run")[1]


@pytest.mark.parametrize(
    ("code", "reason", "message", "expected"),
    [
        (403, "forbidden", "Permission 'run.services.get' denied on resource", "permission denied"),
        (429, "rateLimitExceeded", "Quota exceeded for quota metric 'Read requests'", "quota exceeded"),
    ],
    ids=["permission-denied", "quota"],
)
def test_permission_and_quota_errors_end_with_clear_messages(gw, code, reason, message, expected):
    gw.fake.inject("GET", r"/v2/projects/.*/services/llm-canary-gateway$", code, reason, message, times=5)
    result = gw.deploy()
    assert result.rc != 0
    assert expected in result.output and message in result.output
    assert "Cloud Run service llm-canary-gateway" in result.output
    assert_no_secret_in(result.output)


def test_destroy_removes_the_gateway(gw):
    assert gw.deploy().rc == 0
    gw.fake.platform.projects["canary-test"].services.add("compute.googleapis.com")  # as infra.yml leaves it
    result = gw.play("playbooks/destroy.yml", destroy_confirm="canary-test", infra_api_retries=0)
    assert result.rc == 0, result.output[-5000:]
    assert gw.state.services == {} and gw.state.revisions == {}
    assert gw.state.secrets == {} and gw.state.repositories == {} and gw.state.buckets == {}
    project = gw.fake.platform.projects["canary-test"]
    assert "llm-canary-gateway@canary-test.iam.gserviceaccount.com" not in project.service_accounts
    again = gw.play("playbooks/destroy.yml", destroy_confirm="canary-test", infra_api_retries=0)
    assert again.rc == 0, again.output[-5000:]


def test_llamacpp_service_is_the_gateways_last_backend(gw):
    result = gw.deploy(
        enable_llamacpp_service=True,
        llamacpp_service_model_bucket="canary-models",
        llamacpp_service_model_object="SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    assert result.rc == 0, result.output[-5000:]
    service = gw.state.services["projects/canary-test/locations/us-central1/services/llm-canary-llamacpp"]
    template = service["template"]
    assert template["volumes"] == [{"name": "models", "gcs": {"bucket": "canary-models", "readOnly": True}}]
    container = template["containers"][0]
    assert container["image"] == "ghcr.io/ggml-org/llama.cpp:server"
    assert "/models/SmolLM2-135M-Instruct.Q4_1.gguf" in container["args"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert "nodeSelector" not in template  # CPU unless llamacpp_service_gpu
    assert [e["name"] for e in container["env"]] == ["LLAMA_API_KEY"] and "value" not in container["env"][0]
    backends_secret = next(
        v for k, v in gw.state.secrets.items() if k.endswith("llm-canary-gateway-backends")
    )
    backends = json.loads(backends_secret["_versions"][-1])
    last = max(backends, key=lambda b: b.get("priority", 0))
    assert last["name"] == "llm-canary-llamacpp" and last["url"] == service["uri"] and last["priority"] == 100
    assert {b["name"] for b in backends} == {"llm-canary-llamacpp", "llm-canary-llamacpp-1"}
    assert_no_secret_in(result.output)


def test_without_vm_backends_the_gateway_needs_no_ca_and_mounts_none(gw):
    result = gw.deploy(
        gateway_backends=[],  # only the llama.cpp Cloud Run service, with Google's certificate
        enable_llamacpp_service=True,
        llamacpp_service_model_bucket="canary-models",
        llamacpp_service_model_object="m.gguf",
        hosts_tls_ca_file=str(gw.model_ca.parent / "missing.crt"),
    )
    assert result.rc == 0, result.output[-5000:]
    template = gw.service()["template"]
    assert "volumes" not in template and "volumeMounts" not in template["containers"][0]
    assert "SSL_CERT_FILE" not in {e["name"] for e in template["containers"][0]["env"]}
    assert "llm-canary-gateway-model-ca" not in gw.secret_versions()


def test_llamacpp_service_on_a_gpu(gw):
    result = gw.deploy(
        enable_llamacpp_service=True,
        llamacpp_service_model_bucket="canary-models",
        llamacpp_service_model_object="m.gguf",
        llamacpp_service_gpu="nvidia-l4",
    )
    assert result.rc == 0, result.output[-5000:]
    template = gw.state.services["projects/canary-test/locations/us-central1/services/llm-canary-llamacpp"][
        "template"
    ]
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}
    resources = template["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" and resources["cpuIdle"] is False


def test_canary_play_promotes_a_revision_that_passes_on_its_tag_url(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    already = len(gw.state.served)
    result = gw.deploy(
        "tests/infra/gateway_canary.yml",
        gateway_image=NEW_IMAGE,
        gateway_promotion="canary",
        canary_skip_deploy=True,
        canary_slo_requests=10,
    )
    assert result.rc == 0, result.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert "canary passed" in result.output
    # Smoke tests and SLO requests reached the canary's tag URL only, then it was promoted.
    served = gw.state.served[already:]
    assert len(served) >= 10 and all(revision == second for revision, _ in served)
    assert gw.traffic() == {second: (100, "canary"), first: (0, "previous")}
    assert_no_secret_in(result.output)


def test_canary_play_leaves_the_previous_revision_serving_when_the_canary_fails(gw):
    assert gw.deploy().rc == 0
    (first,) = gw.revisions()
    gw.state.unhealthy_images.add(BROKEN_IMAGE)
    result = gw.deploy(
        "tests/infra/gateway_canary.yml",
        gateway_image=BROKEN_IMAGE,
        gateway_promotion="canary",
        canary_skip_deploy=True,
        canary_slo_requests=10,
    )
    assert result.rc == 1, result.output[-5000:]
    second = next(r for r in gw.revisions() if r != first)
    assert "test_gateway: test_health_is_ok" in result.output and "fail" in result.output
    assert f"{first} keeps serving" in result.output
    assert gw.traffic() == {first: (100, ""), second: (0, "canary")}


def test_check_mode_before_the_apis_are_enabled_says_so_and_writes_nothing(gw):
    result = gw.deploy(check=True)
    assert result.rc == 0, result.output[-5000:]
    assert "run.googleapis.com" in result.output and "would be enabled first" in result.output
    assert gw.api_writes() == []


def test_without_any_backend_the_gateway_is_skipped_saying_why(gw):
    result = gw.play("playbooks/gateway.yml")
    assert result.rc == 0, result.output[-5000:]
    assert "Skipping the Cloud Run gateway: it would have no backend" in " ".join(result.output.split())
    assert gw.fake.requests == []
