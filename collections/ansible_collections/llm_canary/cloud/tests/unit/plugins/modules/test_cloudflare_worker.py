# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cloudflare_worker against the fake Cloudflare API (tests/fakes/cloudflare): real HTTP round trips,
request shapes validated by the fake, faults injected there."""

from __future__ import annotations

import hashlib
import json

import pytest
from ansible_collections.llm_canary.cloud.plugins.modules import cloudflare_worker
from ansible_collections.llm_canary.cloud.tests.unit.plugins.modules.conftest import ACCOUNT, TOKEN, ZONE

SOURCE = 'export default { async fetch() { return new Response("v1"); } };\n// héllo: non-ASCII survives\n'
SOURCE_V2 = SOURCE.replace('"v1"', '"v2"')
DO_SOURCE = SOURCE + "export class RateLimiter {}\nexport class Audit {}\n"
MUTATING = ("PUT", "POST", "DELETE", "PATCH")


def worker_args(cloudflare, **overrides):
    args = {
        "api_token": TOKEN,
        "api_base_url": cloudflare.base_url,
        "account_id": ACCOUNT,
        "name": "edge",
        "script": DO_SOURCE,
        "compatibility_date": "2026-04-01",
        "vars": {"UPSTREAM_URL": "https://gateway.test", "RATE_LIMIT_REQUESTS": 60},
        "secrets": {
            "UPSTREAM_API_KEY": "gateway-key-secret",
            "JWT_SECRET": "jwt-secret-value-0123456789abcdef",
        },
        "rate_limits": [{"name": "RATE_LIMITER", "namespace_id": "1001", "limit": 60, "period": 60}],
        "durable_objects": [{"name": "RATE_LIMIT_DO", "class_name": "RateLimiter"}],
    }
    return {**args, **overrides}


def mutations(cloudflare, since=0):
    return [(r.method, r.path) for r in cloudflare.requests[since:] if r.method in MUTATING]


def last_upload_metadata(cloudflare):
    upload = cloudflare.calls("PUT", r"/workers/scripts/edge$")[-1]
    return json.loads(upload.parts["metadata"]["content"])


@pytest.fixture
def deployed(cloudflare, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare))
    assert result["changed"] is True, result
    return result


# ---- first deploy ----------------------------------------------------------------------------


def test_first_deploy_uploads_the_module_byte_exact(cloudflare, deployed):
    script = cloudflare.scripts["edge"]
    assert script.modules["worker.js"] == ("application/javascript+module", DO_SOURCE.encode())
    assert deployed["script"]["sha256"] == hashlib.sha256(DO_SOURCE.encode()).hexdigest()


def test_first_deploy_sends_bindings_of_each_type(cloudflare, deployed):
    bindings = {b["name"]: b for b in cloudflare.scripts["edge"].metadata["bindings"]}
    assert bindings["UPSTREAM_URL"] == {
        "name": "UPSTREAM_URL",
        "type": "plain_text",
        "text": "https://gateway.test",
    }
    assert bindings["RATE_LIMIT_REQUESTS"]["text"] == "60"
    assert bindings["RATE_LIMITER"]["simple"] == {"limit": 60, "period": 60}
    assert bindings["RATE_LIMIT_DO"]["class_name"] == "RateLimiter"


def test_first_deploy_sets_secrets_inside_the_upload(cloudflare, deployed):
    assert cloudflare.scripts["edge"].secrets == {
        "UPSTREAM_API_KEY": "gateway-key-secret",
        "JWT_SECRET": "jwt-secret-value-0123456789abcdef",
    }
    assert deployed["secrets_set"] == ["JWT_SECRET", "UPSTREAM_API_KEY"]
    assert cloudflare.calls("PUT", r"/secrets$") == []


def test_first_deploy_creates_durable_object_classes_by_migration(cloudflare, deployed):
    metadata = last_upload_metadata(cloudflare)
    assert metadata["migrations"]["steps"] == [{"new_sqlite_classes": ["RateLimiter"]}]
    assert "old_tag" not in metadata["migrations"]
    assert cloudflare.scripts["edge"].migration_tag == deployed["script"]["migration_tag"]


def test_first_deploy_enables_workers_dev_and_returns_the_url(cloudflare, deployed):
    assert cloudflare.scripts["edge"].workers_dev is True
    assert deployed["url"] == "https://edge.canary-test.workers.dev"


def test_secret_values_never_appear_in_the_result(deployed):
    text = json.dumps(deployed)
    assert "gateway-key-secret" not in text
    assert "jwt-secret-value" not in text


# ---- idempotence, check mode, diff -----------------------------------------------------------


def test_second_run_changes_nothing(cloudflare, deployed, run_module):
    since = len(cloudflare.requests)
    result = run_module(cloudflare_worker, worker_args(cloudflare))
    assert result["changed"] is False
    assert mutations(cloudflare, since) == []
    assert result["secrets_set"] == []


def test_check_mode_on_a_new_worker_reports_a_change_and_calls_nothing_mutating(cloudflare, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare), check_mode=True)
    assert result["changed"] is True
    assert result["secrets_set"] == ["JWT_SECRET", "UPSTREAM_API_KEY"]
    assert mutations(cloudflare) == []
    assert "edge" not in cloudflare.scripts


def test_check_mode_diff_names_the_changed_source(cloudflare, deployed, run_module):
    since = len(cloudflare.requests)
    result = run_module(
        cloudflare_worker, worker_args(cloudflare, script=DO_SOURCE + "//x\n"), check_mode=True
    )
    assert result["changed"] is True
    assert result["diff"]["before"]["sha256"] != result["diff"]["after"]["sha256"]
    assert result["diff"]["before"]["bindings"] == result["diff"]["after"]["bindings"]
    assert mutations(cloudflare, since) == []
    assert cloudflare.scripts["edge"].modules["worker.js"][1] == DO_SOURCE.encode()


def test_changed_variable_uploads_again(cloudflare, deployed, run_module):
    args = worker_args(cloudflare, vars={"UPSTREAM_URL": "https://gateway2.test", "RATE_LIMIT_REQUESTS": 60})
    result = run_module(cloudflare_worker, args)
    assert result["changed"] is True
    bindings = {b["name"]: b for b in cloudflare.scripts["edge"].metadata["bindings"]}
    assert bindings["UPSTREAM_URL"]["text"] == "https://gateway2.test"


# ---- uploads after the first -----------------------------------------------------------------


def test_new_source_uploads_without_a_migration(cloudflare, deployed, run_module):
    run_module(cloudflare_worker, worker_args(cloudflare, script=DO_SOURCE + "// v2\n"))
    assert "migrations" not in last_upload_metadata(cloudflare)
    assert cloudflare.scripts["edge"].modules["worker.js"][1].endswith(b"// v2\n")


def test_upload_keeps_secrets_already_set(cloudflare, deployed, run_module):
    run_module(cloudflare_worker, worker_args(cloudflare, script=DO_SOURCE + "// v2\n"))
    metadata = last_upload_metadata(cloudflare)
    assert metadata["keep_bindings"] == ["secret_text"]
    assert not [b for b in metadata["bindings"] if b["type"] == "secret_text"]
    assert set(cloudflare.scripts["edge"].secrets) == {"UPSTREAM_API_KEY", "JWT_SECRET"}


def test_added_class_migrates_from_the_deployed_tag(cloudflare, deployed, run_module):
    objects = [
        {"name": "RATE_LIMIT_DO", "class_name": "RateLimiter"},
        {"name": "AUDIT", "class_name": "Audit"},
    ]
    result = run_module(cloudflare_worker, worker_args(cloudflare, durable_objects=objects))
    migrations = last_upload_metadata(cloudflare)["migrations"]
    assert migrations["old_tag"] == deployed["script"]["migration_tag"]
    assert migrations["steps"] == [{"new_sqlite_classes": ["Audit"]}]
    assert result["script"]["migration_tag"] == migrations["new_tag"] != migrations["old_tag"]


def test_removed_class_is_deleted_by_migration(cloudflare, deployed, run_module):
    run_module(cloudflare_worker, worker_args(cloudflare, durable_objects=[], vars={}))
    migrations = last_upload_metadata(cloudflare)["migrations"]
    assert migrations["steps"] == [{"deleted_classes": ["RateLimiter"]}]


def test_missing_secret_is_set_alone_without_an_upload(cloudflare, deployed, run_module):
    since = len(cloudflare.requests)
    secrets = {**worker_args(cloudflare)["secrets"], "EXTRA": "extra-value"}
    result = run_module(cloudflare_worker, worker_args(cloudflare, secrets=secrets))
    assert result["changed"] is True
    assert result["secrets_set"] == ["EXTRA"]
    assert mutations(cloudflare, since) == [("PUT", f"/accounts/{ACCOUNT}/workers/scripts/edge/secrets")]
    assert cloudflare.scripts["edge"].secrets["EXTRA"] == "extra-value"


def test_update_secrets_always_sets_every_secret(cloudflare, deployed, run_module):
    secrets = {"UPSTREAM_API_KEY": "rotated", "JWT_SECRET": "jwt-secret-value-0123456789abcdef"}
    result = run_module(cloudflare_worker, worker_args(cloudflare, secrets=secrets, update_secrets="always"))
    assert result["changed"] is True
    assert cloudflare.scripts["edge"].secrets["UPSTREAM_API_KEY"] == "rotated"
    assert len(cloudflare.calls("PUT", r"/secrets$")) == 2


def test_on_create_leaves_an_existing_secret_alone(cloudflare, deployed, run_module):
    secrets = {"UPSTREAM_API_KEY": "other", "JWT_SECRET": "jwt-secret-value-0123456789abcdef"}
    result = run_module(cloudflare_worker, worker_args(cloudflare, secrets=secrets))
    assert result["changed"] is False
    assert cloudflare.scripts["edge"].secrets["UPSTREAM_API_KEY"] == "gateway-key-secret"


# ---- workers.dev, routes, custom domains -----------------------------------------------------


def test_workers_dev_off_disables_the_subdomain(cloudflare, deployed, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare, workers_dev=False))
    assert result["changed"] is True
    assert cloudflare.scripts["edge"].workers_dev is False
    assert "url" not in result


def test_routes_are_created_then_unchanged(cloudflare, deployed, run_module):
    routes = [{"pattern": "api.example.com/v1/*", "zone_id": ZONE}]
    assert run_module(cloudflare_worker, worker_args(cloudflare, routes=routes))["changed"] is True
    assert [(r["pattern"], r["script"]) for r in cloudflare.routes[ZONE]] == [
        ("api.example.com/v1/*", "edge")
    ]
    assert run_module(cloudflare_worker, worker_args(cloudflare, routes=routes))["changed"] is False


def test_unlisted_route_to_the_worker_is_removed(cloudflare, deployed, run_module):
    old = [{"pattern": "old.example.com/*", "zone_id": ZONE}]
    run_module(cloudflare_worker, worker_args(cloudflare, routes=old))
    new = [{"pattern": "api.example.com/v1/*", "zone_id": ZONE}]
    result = run_module(cloudflare_worker, worker_args(cloudflare, routes=new))
    assert [r["pattern"] for r in cloudflare.routes[ZONE]] == ["api.example.com/v1/*"]
    assert result["diff"]["before"]["routes"] == [{"pattern": "old.example.com/*", "zone_id": ZONE}]


def test_route_of_another_worker_is_repointed(cloudflare, deployed, run_module):
    cloudflare.routes[ZONE] = [{"id": "r1", "pattern": "api.example.com/v1/*", "script": "legacy"}]
    routes = [{"pattern": "api.example.com/v1/*", "zone_id": ZONE}]
    run_module(cloudflare_worker, worker_args(cloudflare, routes=routes))
    assert cloudflare.routes[ZONE] == [{"id": "r1", "pattern": "api.example.com/v1/*", "script": "edge"}]


def test_custom_domain_is_attached_and_an_unlisted_one_detached(cloudflare, deployed, run_module):
    first = [{"hostname": "a.example.com", "zone_id": ZONE}]
    run_module(cloudflare_worker, worker_args(cloudflare, custom_domains=first))
    second = [{"hostname": "b.example.com", "zone_id": ZONE}]
    result = run_module(cloudflare_worker, worker_args(cloudflare, custom_domains=second))
    assert [d["hostname"] for d in cloudflare.domains] == ["b.example.com"]
    assert result["custom_domains"] == second


# ---- absent ----------------------------------------------------------------------------------


def test_absent_deletes_the_worker_with_force_and_its_domains_and_routes(cloudflare, deployed, run_module):
    routes = [{"pattern": "api.example.com/v1/*", "zone_id": ZONE}]
    domains = [{"hostname": "a.example.com", "zone_id": ZONE}]
    run_module(cloudflare_worker, worker_args(cloudflare, routes=routes, custom_domains=domains))
    result = run_module(cloudflare_worker, worker_args(cloudflare, state="absent", routes=routes))
    assert result["changed"] is True
    assert "edge" not in cloudflare.scripts
    assert cloudflare.calls("DELETE", r"/workers/scripts/edge$")[-1].query == {"force": ["true"]}
    assert cloudflare.domains == []
    assert cloudflare.routes[ZONE] == []


def test_absent_when_already_gone_changes_nothing(cloudflare, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare, state="absent"))
    assert result["changed"] is False
    assert mutations(cloudflare) == []


def test_absent_in_check_mode_deletes_nothing(cloudflare, deployed, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare, state="absent"), check_mode=True)
    assert result["changed"] is True
    assert "edge" in cloudflare.scripts


# ---- errors and retries ----------------------------------------------------------------------


def test_bad_token_fails_with_cloudflare_error_and_no_token_in_message(cloudflare, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare, api_token="wrong-token-value"))
    assert result["failed"] is True
    assert result["status"] == 401
    assert result["error_codes"] == [10000]
    assert "GET /accounts/" in result["msg"] and "HTTP 401" in result["msg"]
    assert "Authentication error" in result["msg"] and "revoked" in result["msg"]
    assert "wrong-token-value" not in json.dumps(result)


def test_token_from_the_environment(cloudflare, run_module, monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", TOKEN)
    args = worker_args(cloudflare)
    del args["api_token"]
    assert run_module(cloudflare_worker, args)["changed"] is True


def test_429_is_retried_after_retry_after(cloudflare, run_module, sleeps):
    cloudflare.fail_next(429, headers={"Retry-After": "7"})
    result = run_module(cloudflare_worker, worker_args(cloudflare))
    assert result["changed"] is True
    assert sleeps == [7.0]


def test_5xx_is_retried_with_backoff(cloudflare, run_module, sleeps):
    cloudflare.fail_next(503, count=2)
    result = run_module(cloudflare_worker, worker_args(cloudflare))
    assert result["changed"] is True
    assert sleeps == [1.0, 2.0]


def test_5xx_past_the_retries_fails_naming_call_method_and_status(cloudflare, run_module, sleeps):
    cloudflare.fail_next(502, count=3)
    result = run_module(cloudflare_worker, worker_args(cloudflare, api_retries=2))
    assert result["failed"] is True
    assert result["status"] == 502
    assert result["msg"].startswith(
        f"Cloudflare API GET /accounts/{ACCOUNT}/workers/services/edge failed with HTTP 502"
    )
    assert len(sleeps) == 2


def test_client_error_is_not_retried(cloudflare, run_module, sleeps):
    cloudflare.fail_next(400)
    result = run_module(cloudflare_worker, worker_args(cloudflare))
    assert result["failed"] is True
    assert result["status"] == 400
    assert sleeps == []


def test_malformed_compatibility_date_is_refused_before_any_call(cloudflare, run_module):
    result = run_module(cloudflare_worker, worker_args(cloudflare, compatibility_date="2026-4-1"))
    assert result["failed"] is True
    assert "compatibility_date must be YYYY-MM-DD" in result["msg"]
    assert cloudflare.requests == []


def test_duplicate_binding_names_are_refused_before_any_call(cloudflare, run_module):
    args = worker_args(cloudflare, vars={"JWT_SECRET": "plain"})
    result = run_module(cloudflare_worker, args)
    assert result["failed"] is True
    assert "JWT_SECRET" in result["msg"]
    assert cloudflare.requests == []


def test_unreadable_script_path_fails_naming_it(cloudflare, run_module, tmp_path):
    args = worker_args(cloudflare, script_path=str(tmp_path / "missing.js"))
    del args["script"]
    result = run_module(cloudflare_worker, args)
    assert result["failed"] is True
    assert "script_path" in result["msg"] and "missing.js" in result["msg"]
