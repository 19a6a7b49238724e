# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Our upload against the reference client's: wrangler 4.86.0 deploys files/worker.js with
files/wrangler.toml to one fake, cloudflare_worker deploys the same Worker with the same settings
to another, and the two uploads must agree part by part and binding by binding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib

import pytest
from ansible_collections.llm_canary.cloud.plugins.modules import cloudflare_worker
from ansible_collections.llm_canary.cloud.tests.unit.plugins.modules.conftest import (
    ACCOUNT,
    REPO_ROOT,
    TOKEN,
    FakeCloudflare,
    run_module_once,
)

WRANGLER = REPO_ROOT / "tests" / "worker" / "node_modules" / ".bin" / "wrangler"
WORKER_DIR = REPO_ROOT / "files"
# Sent by wrangler only: its own bookkeeping, or features this module does not manage.
WRANGLER_ONLY_METADATA = {
    "observability",
    "placement",
    "tail_consumers",
    "limits",
    "annotations",
    "keep_assets",
}
# Sent by us only: keep the secrets set earlier when uploading (wrangler relies on its default).
OURS_ONLY_METADATA = {"keep_bindings"}


def upload_of(fake):
    (upload,) = fake.calls("PUT", r"/workers/scripts/[^/]+$")
    return upload


@pytest.fixture(scope="module")
def wrangler_upload(tmp_path_factory):
    if not WRANGLER.exists():
        pytest.fail(f"{WRANGLER} is missing: run `make setup` (scripts/setup.d/60-worker.sh installs it)")
    workdir = tmp_path_factory.mktemp("wrangler")
    for name in ("worker.js", "wrangler.toml"):
        shutil.copy(WORKER_DIR / name, workdir / name)
    fake = FakeCloudflare(TOKEN, ACCOUNT)
    env = {
        **os.environ,
        "HOME": str(workdir),
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "CLOUDFLARE_API_BASE_URL": fake.serve(),
        "WRANGLER_SEND_METRICS": "false",
        "WRANGLER_HIDE_BANNER": "true",
        "CI": "true",
    }
    try:
        done = subprocess.run(
            [str(WRANGLER), "deploy", "--no-bundle", "--config", "wrangler.toml"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"wrangler deploy failed:\n{done.stdout}\n{done.stderr}"
        return fake
    finally:
        fake.close()


@pytest.fixture(scope="module")
def module_upload(wrangler_upload):
    """cloudflare_worker with the settings wrangler.toml gives wrangler."""
    config = tomllib.loads((WORKER_DIR / "wrangler.toml").read_text())
    fake = FakeCloudflare(TOKEN, ACCOUNT)
    try:
        args = {
            "api_token": TOKEN,
            "api_base_url": fake.serve(),
            "account_id": ACCOUNT,
            "name": config["name"],
            "script_path": str(WORKER_DIR / config["main"]),
            "compatibility_date": config["compatibility_date"],
            "vars": config["vars"],
            "rate_limits": [
                {"name": r["name"], "namespace_id": r["namespace_id"], **r["simple"]}
                for r in config["ratelimits"]
            ],
            "durable_objects": [
                {"name": d["name"], "class_name": d["class_name"]}
                for d in config["durable_objects"]["bindings"]
            ],
            "workers_dev": config["workers_dev"],
        }
        result = run_module_once(cloudflare_worker, args)
        assert result["changed"] is True, result
        return fake
    finally:
        fake.close()


def metadata(fake):
    return json.loads(upload_of(fake).parts["metadata"]["content"])


def test_metadata_fields_match_except_documented_extras(wrangler_upload, module_upload):
    theirs, ours = set(metadata(wrangler_upload)), set(metadata(module_upload))
    assert theirs - ours <= WRANGLER_ONLY_METADATA
    assert ours - theirs == OURS_ONLY_METADATA


def test_main_module_and_compatibility_match(wrangler_upload, module_upload):
    theirs, ours = metadata(wrangler_upload), metadata(module_upload)
    for key in ("main_module", "compatibility_date", "compatibility_flags"):
        assert ours[key] == theirs[key], key


def test_bindings_match_binding_by_binding(wrangler_upload, module_upload):
    def by_name(fake):
        return sorted(metadata(fake)["bindings"], key=lambda b: b["name"])

    assert by_name(module_upload) == by_name(wrangler_upload)


def test_migration_steps_match(wrangler_upload, module_upload):
    theirs, ours = metadata(wrangler_upload)["migrations"], metadata(module_upload)["migrations"]
    assert ours["steps"] == theirs["steps"]
    assert set(ours) == set(theirs)  # new_tag (+ old_tag only on later uploads)


def test_module_part_matches_byte_for_byte(wrangler_upload, module_upload):
    theirs, ours = upload_of(wrangler_upload).parts, upload_of(module_upload).parts
    assert set(ours) == set(theirs)
    name = metadata(module_upload)["main_module"]
    assert ours[name] == theirs[name]
    assert ours["metadata"]["content_type"] == theirs["metadata"]["content_type"] == "text/plain"


def test_workers_dev_is_enabled_the_same_way(wrangler_upload, module_upload):
    def enable_calls(fake):
        return [json.loads(r.body) for r in fake.calls("POST", r"/workers/scripts/[^/]+/subdomain$")]

    assert enable_calls(module_upload) == enable_calls(wrangler_upload) == [{"enabled": True}]
