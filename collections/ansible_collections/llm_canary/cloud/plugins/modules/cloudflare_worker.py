#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloudflare_worker
short_description: Deploy a Cloudflare Worker (ES module) with its bindings, secrets, routes and domains
version_added: 0.1.0
description:
  - Uploads one ES-module Worker through the Cloudflare v4 API with its variables, secrets, Rate
    Limiting and Durable Object bindings, then enables C(workers.dev) or not, and sets routes and
    custom domains.
  - Idempotent. It reads what is deployed (module source, settings, secret names, workers.dev,
    routes, domains) and changes only what differs. Secret values cannot be read back, so a secret
    is set when it is missing, or on every run with O(update_secrets=always).
  - Uploads keep the secrets already set (C(keep_bindings)), and carry Durable Object migrations
    only when the set of classes changes.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.cloudflare_api
attributes:
  check_mode:
    support: full
    description: Reads only; reports what would change, with the same diff.
  diff_mode:
    support: full
    description:
      - The deployed script (source hash, settings, binding names), secrets (names), workers.dev, routes and
        domains, before and after.
options:
  account_id:
    description: The Cloudflare account ID.
    type: str
    required: true
  name:
    description: The Worker's (script's) name.
    type: str
    required: true
  state:
    description:
      - V(present) deploys the Worker; V(absent) deletes it with its routes in O(routes)'s zones and its
        custom domains.
    type: str
    choices: [present, absent]
    default: present
  script_path:
    description:
      - Path of the ES-module source on the controller. One of O(script_path) and O(script) is required for
        V(present).
    type: path
  script:
    description: The ES-module source itself.
    type: str
  main_module:
    description: Name of the module part. Defaults to the file name of O(script_path), else V(worker.js).
    type: str
  compatibility_date:
    description: The Workers runtime compatibility date, V(YYYY-MM-DD). Required for V(present).
    type: str
  compatibility_flags:
    description: Workers runtime compatibility flags.
    type: list
    elements: str
    default: []
  vars:
    description:
      - Plain-text variables (C(plain_text) bindings); values are converted to strings. Visible in the
        dashboard; put secrets in O(secrets).
    type: dict
    default: {}
  secrets:
    description:
      - Secret variables (C(secret_text) bindings). Values are never logged or shown in diffs. Secrets not
        listed here are left as they are.
    type: dict
    default: {}
  update_secrets:
    description:
      - V(on_create) sets a secret only when the Worker does not have it yet, so a second run reports no
        change.
      - V(always) sets every secret on every run (and so always reports a change); use it to rotate.
    type: str
    choices: [on_create, always]
    default: on_create
  rate_limits:
    description: Workers Rate Limiting bindings (C(ratelimit)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The binding's name in the Worker's C(env).
        type: str
        required: true
      namespace_id:
        description: An integer, as a string, unique among the account's rate limit namespaces.
        type: str
        required: true
      limit:
        description: Requests allowed per key and period.
        type: int
        required: true
      period:
        description: The period in seconds.
        type: int
        choices: [10, 60]
        default: 60
  durable_objects:
    description:
      - Durable Object namespaces of classes this Worker exports. A class not deployed yet is created
        with a C(new_sqlite_classes) migration; a class no longer listed is deleted with its data
        (C(deleted_classes)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The binding's name in the Worker's C(env).
        type: str
        required: true
      class_name:
        description: The exported class.
        type: str
        required: true
  workers_dev:
    description: Whether the Worker answers on C(https://NAME.SUBDOMAIN.workers.dev).
    type: bool
    default: true
  routes:
    description:
      - Routes to this Worker. In each zone named here, routes to this Worker that are not listed are
        removed.
    type: list
    elements: dict
    default: []
    suboptions:
      pattern:
        description: The route pattern, such as V(api.example.com/v1/*).
        type: str
        required: true
      zone_id:
        description: The zone's ID.
        type: str
        required: true
  custom_domains:
    description:
      - Custom domains served by this Worker. Custom domains of this Worker that are not listed are
        detached.
    type: list
    elements: dict
    default: []
    suboptions:
      hostname:
        description: The hostname, such as V(llm.example.com).
        type: str
        required: true
      zone_id:
        description: The ID of the zone the hostname is in.
        type: str
        required: true
notes:
  - Tested against a fake of the Cloudflare API whose request shapes are checked against what wrangler
    4.86.0 sends.
seealso:
  - name: Multipart upload metadata
    description: The upload format this module sends.
    link: https://developers.cloudflare.com/workers/configuration/multipart-upload-metadata/
"""

EXAMPLES = r"""
- name: Deploy the edge Worker on workers.dev with an exact Durable Object rate limiter
  llm_canary.cloud.cloudflare_worker:
    account_id: 0123456789abcdef0123456789abcdef
    name: llm-canary-edge
    script_path: files/worker.js
    compatibility_date: "2026-04-01"
    vars:
      UPSTREAM_URL: https://model-gateway-abc123-uc.a.run.app
      JWT_ISSUER: https://issuer.example.com
      RATE_LIMIT_MODE: do
      RATE_LIMIT_REQUESTS: 60
      RATE_LIMIT_PERIOD_S: 60
    secrets:
      UPSTREAM_API_KEY: "{{ vault_gateway_key }}"
      JWT_SECRET: "{{ vault_jwt_secret }}"
    durable_objects:
      - name: RATE_LIMIT_DO
        class_name: RateLimiter

- name: Serve it on a route of one zone instead of workers.dev (removes its other routes in that zone)
  llm_canary.cloud.cloudflare_worker:
    account_id: 0123456789abcdef0123456789abcdef
    name: llm-canary-edge
    script_path: files/worker.js
    compatibility_date: "2026-04-01"
    workers_dev: false
    rate_limits:
      - name: RATE_LIMITER
        namespace_id: "1001"
        limit: 60
        period: 60
    routes:
      - pattern: api.example.com/v1/*
        zone_id: fedcba9876543210fedcba9876543210

- name: Rotate the gateway key (sets every listed secret, so it always reports a change)
  llm_canary.cloud.cloudflare_worker:
    account_id: 0123456789abcdef0123456789abcdef
    name: llm-canary-edge
    script_path: files/worker.js
    compatibility_date: "2026-04-01"
    secrets:
      UPSTREAM_API_KEY: "{{ vault_new_gateway_key }}"
    update_secrets: always

- name: Delete the Worker, its custom domains, and its routes in the listed zones
  llm_canary.cloud.cloudflare_worker:
    account_id: 0123456789abcdef0123456789abcdef
    name: llm-canary-edge
    state: absent
"""

RETURN = r"""
script:
  description: The deployed script; empty when absent.
  returned: always
  type: dict
  sample: {"name": "llm-canary-edge", "sha256": "9f86d0...", "migration_tag": "llm-canary-3f1a2b3c"}
url:
  description: The workers.dev URL, when O(workers_dev) is on.
  returned: when state is present and workers_dev is true
  type: str
  sample: https://llm-canary-edge.example.workers.dev
secrets_set:
  description: Names of the secrets this run set (or would set, in check mode). Never values.
  returned: always
  type: list
  elements: str
  sample: [UPSTREAM_API_KEY]
routes:
  description: The routes to this Worker in the zones of O(routes) after the run.
  returned: when state is present
  type: list
  elements: dict
  sample: [{"pattern": "api.example.com/v1/*", "zone_id": "fedcba98..."}]
custom_domains:
  description: The custom domains of this Worker after the run.
  returned: when state is present
  type: list
  elements: dict
  sample: [{"hostname": "llm.example.com", "zone_id": "fedcba98..."}]
"""

import hashlib  # noqa: E402 (after the documentation, as Ansible wants)
import os  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.cloudflare import (  # noqa: E402
    CloudflareApiError,
    CloudflareClient,
    cloudflare_argument_spec,
    encode_multipart,
    path_of,
)

MODULE_CONTENT_TYPE = "application/javascript+module"
MIGRATION_TAG_PREFIX = "llm-canary-"
SERVICE_NOT_FOUND = 10090
SCRIPT_NOT_FOUND = 10007


def normalized_bindings(bindings):
    """Bindings reduced to what we manage and compare (secrets excluded: their values are unreadable)."""
    shape = {
        "plain_text": lambda b: {"text": str(b.get("text"))},
        "ratelimit": lambda b: {"namespace_id": str(b.get("namespace_id")), "simple": b.get("simple")},
        "durable_object_namespace": lambda b: {"class_name": b.get("class_name")},
    }
    result = []
    for binding in bindings:
        if binding.get("type") in shape and not binding.get("script_name"):
            result.append(
                {"name": binding["name"], "type": binding["type"], **shape[binding["type"]](binding)}
            )
    return sorted(result, key=lambda b: b["name"])


class WorkerDeployment:
    """Reads what is deployed, works out the difference, and applies it (unless in check mode)."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.account = self.params["account_id"]
        self.name = self.params["name"]
        self.changed = False
        self.secrets_set = []

    def api(self, method, *segments, **kwargs):
        return self.client.call(method, path_of(*segments), **kwargs)

    def script_api(self, method, *segments, **kwargs):
        return self.api(
            method, "accounts", self.account, "workers", "scripts", self.name, *segments, **kwargs
        )

    # ---- reading --------------------------------------------------------------------------

    def deployed_script(self):
        """What is deployed, or None when there is no such Worker."""
        try:
            service = self.api("GET", "accounts", self.account, "workers", "services", self.name)
        except CloudflareApiError as err:
            if err.status == 404 and (SERVICE_NOT_FOUND in err.codes or SCRIPT_NOT_FOUND in err.codes):
                return None
            raise
        settings = self.script_api("GET", "settings")
        content = self.script_api("GET", "content", "v2", raw=True)
        subdomain = self.script_api("GET", "subdomain")
        bindings = settings.get("bindings") or []
        return {
            "sha256": hashlib.sha256(content).hexdigest(),
            "compatibility_date": settings.get("compatibility_date"),
            "compatibility_flags": sorted(settings.get("compatibility_flags") or []),
            "bindings": normalized_bindings(bindings),
            "secrets": sorted(b["name"] for b in bindings if b.get("type") == "secret_text"),
            "migration_tag": ((service.get("default_environment") or {}).get("script") or {}).get(
                "migration_tag"
            ),
            "workers_dev": bool(subdomain.get("enabled")),
        }

    # ---- the desired script ---------------------------------------------------------------

    def source(self):
        if self.params["script"] is not None:
            return to_bytes(self.params["script"])
        try:
            with open(self.params["script_path"], "rb") as handle:
                return handle.read()
        except OSError as err:
            self.module.fail_json(msg=f"script_path {self.params['script_path']}: cannot read it: {err}")

    def main_module(self):
        if self.params["main_module"]:
            return self.params["main_module"]
        return os.path.basename(self.params["script_path"]) if self.params["script_path"] else "worker.js"

    def desired_bindings(self):
        """Bindings in the order wrangler sends them: variables, Durable Objects, rate limits."""
        bindings = [{"name": k, "type": "plain_text", "text": str(v)} for k, v in self.params["vars"].items()]
        bindings += [
            {"name": d["name"], "type": "durable_object_namespace", "class_name": d["class_name"]}
            for d in self.params["durable_objects"]
        ]
        bindings += [
            {
                "name": r["name"],
                "type": "ratelimit",
                "namespace_id": r["namespace_id"],
                "simple": {"limit": r["limit"], "period": r["period"]},
            }
            for r in self.params["rate_limits"]
        ]
        return bindings

    def migrations(self, deployed):
        """A migration only when the set of Durable Object classes changes; None otherwise."""
        wanted = sorted({d["class_name"] for d in self.params["durable_objects"]})
        have = sorted({b["class_name"] for b in (deployed or {}).get("bindings", []) if "class_name" in b})
        new = [c for c in wanted if c not in have]
        deleted = [c for c in have if c not in wanted]
        if not new and not deleted:
            return None
        step = {}
        if new:
            step["new_sqlite_classes"] = new
        if deleted:
            step["deleted_classes"] = deleted
        tag = MIGRATION_TAG_PREFIX + hashlib.sha256(",".join(wanted).encode()).hexdigest()[:8]
        migrations = {"new_tag": tag, "steps": [step]}
        if deployed and deployed["migration_tag"]:
            migrations["old_tag"] = deployed["migration_tag"]
        return migrations

    def secrets_to_set(self, deployed):
        have = set((deployed or {}).get("secrets", []))
        always = self.params["update_secrets"] == "always"
        return sorted(name for name in self.params["secrets"] if always or name not in have)

    # ---- applying -------------------------------------------------------------------------

    def upload(self, source, bindings, migrations, secrets):
        # Secrets due now travel inside the upload, so a new Worker never runs without them;
        # keep_bindings keeps the ones already set.
        secret_bindings = [
            {"name": n, "type": "secret_text", "text": str(self.params["secrets"][n])} for n in secrets
        ]
        metadata = {
            "main_module": self.main_module(),
            "bindings": bindings + secret_bindings,
            "compatibility_date": self.params["compatibility_date"],
            "compatibility_flags": self.params["compatibility_flags"],
            "keep_bindings": ["secret_text"],
        }
        if migrations is not None:
            metadata["migrations"] = migrations
        content_type, body = encode_multipart(
            [
                ("metadata", None, "text/plain", self.module.jsonify(metadata).encode()),
                (self.main_module(), self.main_module(), MODULE_CONTENT_TYPE, source),
            ]
        )
        return self.script_api("PUT", body=body, content_type=content_type)

    def put_secret(self, name):
        value = str(self.params["secrets"][name])
        self.script_api("PUT", "secrets", json_body={"name": name, "text": value, "type": "secret_text"})

    def ensure_present(self):
        deployed = self.deployed_script()
        source = self.source()
        bindings = self.desired_bindings()
        migrations = self.migrations(deployed)
        secrets = self.secrets_to_set(deployed)
        desired = {
            "sha256": hashlib.sha256(source).hexdigest(),
            "compatibility_date": self.params["compatibility_date"],
            "compatibility_flags": sorted(self.params["compatibility_flags"]),
            "bindings": normalized_bindings(bindings),
            "secrets": sorted(set((deployed or {}).get("secrets", [])) | set(self.params["secrets"])),
        }
        compared = ("sha256", "compatibility_date", "compatibility_flags", "bindings")
        needs_upload = (
            deployed is None or migrations is not None or any(deployed[k] != desired[k] for k in compared)
        )
        migration_tag = migrations["new_tag"] if migrations else (deployed or {}).get("migration_tag")
        if needs_upload or secrets:
            self.changed = True
            self.secrets_set = secrets
        if not self.module.check_mode:
            if needs_upload:
                result = self.upload(source, bindings, migrations, secrets)
                migration_tag = (
                    result.get("migration_tag", migration_tag) if isinstance(result, dict) else migration_tag
                )
            else:
                for name in secrets:
                    self.put_secret(name)

        before = {k: deployed[k] for k in (*compared, "secrets")} if deployed else {}
        after = dict(desired)
        workers_dev_before, url = self.ensure_workers_dev(deployed)
        before["workers_dev"], after["workers_dev"] = workers_dev_before, self.params["workers_dev"]
        wanted_routes = {(r["zone_id"], r["pattern"]) for r in self.params["routes"]}
        before["routes"], after["routes"] = self.ensure_routes(wanted_routes)
        before["custom_domains"], after["custom_domains"] = self.ensure_custom_domains(deployed is not None)
        if not deployed:
            before = {}
        result = dict(
            script={"name": self.name, "sha256": desired["sha256"], "migration_tag": migration_tag},
            secrets_set=self.secrets_set,
            routes=after["routes"],
            custom_domains=after["custom_domains"],
            diff={"before": before, "after": after},
        )
        if url:
            result["url"] = url
        return result

    def ensure_workers_dev(self, deployed):
        enabled = bool(deployed and deployed["workers_dev"])
        wanted = self.params["workers_dev"]
        if enabled != wanted:
            self.changed = True
            if not self.module.check_mode:
                self.script_api("POST", "subdomain", json_body={"enabled": wanted})
        if not wanted:
            return enabled, None
        subdomain = self.api("GET", "accounts", self.account, "workers", "subdomain").get("subdomain")
        return enabled, f"https://{self.name}.{subdomain}.workers.dev" if subdomain else None

    def ensure_routes(self, wanted):
        """Routes to this Worker in the zones named in `routes`: create, repoint, remove the unlisted.

        `wanted` is a set of (zone_id, pattern).
        """
        before = []
        for zone in sorted({r["zone_id"] for r in self.params["routes"]}):
            current = self.api("GET", "zones", zone, "workers", "routes")
            by_pattern = {route["pattern"]: route for route in current}
            for route in current:
                if route.get("script") == self.name:
                    before.append({"pattern": route["pattern"], "zone_id": zone})
                    if (zone, route["pattern"]) not in wanted:
                        self.mutate("DELETE", "zones", zone, "workers", "routes", route["id"])
            for pattern in sorted(p for z, p in wanted if z == zone):
                route = by_pattern.get(pattern)
                body = {"pattern": pattern, "script": self.name}
                if route is None:
                    self.mutate("POST", "zones", zone, "workers", "routes", json_body=body)
                elif route.get("script") != self.name:
                    self.mutate("PUT", "zones", zone, "workers", "routes", route["id"], json_body=body)
        after = [{"pattern": p, "zone_id": z} for z, p in sorted(wanted)]
        return sorted(before, key=lambda r: (r["zone_id"], r["pattern"])), after

    def ensure_custom_domains(self, exists):
        """This Worker's custom domains: attach the missing, detach the unlisted."""
        wanted = {(d["hostname"], d["zone_id"]) for d in self.params["custom_domains"]}
        current = []
        if exists:
            current = self.api(
                "GET", "accounts", self.account, "workers", "domains", query={"service": self.name}
            )
        have = {(d["hostname"], d["zone_id"]) for d in current}
        for domain in current:
            if (domain["hostname"], domain["zone_id"]) not in wanted:
                self.mutate("DELETE", "accounts", self.account, "workers", "domains", domain["id"])
        for hostname, zone in sorted(wanted - have):
            body = {"hostname": hostname, "zone_id": zone, "service": self.name, "environment": "production"}
            self.mutate("PUT", "accounts", self.account, "workers", "domains", json_body=body)
        before = [{"hostname": h, "zone_id": z} for h, z in sorted(have)]
        return before, [{"hostname": h, "zone_id": z} for h, z in sorted(wanted)]

    def mutate(self, method, *segments, **kwargs):
        """A changing call: counted as a change, skipped in check mode."""
        self.changed = True
        if not self.module.check_mode:
            self.api(method, *segments, **kwargs)

    def ensure_absent(self):
        """Delete the Worker, after its routes (in the zones of `routes`) and its custom domains."""
        deployed = self.deployed_script()
        if deployed is None:
            return dict(script={}, secrets_set=[], diff={"before": {}, "after": {}})
        before_routes = self.ensure_routes(wanted=set())[0]
        self.params["custom_domains"] = []
        before_domains = self.ensure_custom_domains(True)[0]
        # force: a Worker that binds its own Durable Objects cannot be deleted without it.
        self.mutate(
            "DELETE", "accounts", self.account, "workers", "scripts", self.name, query={"force": "true"}
        )
        before = {
            k: deployed[k] for k in ("sha256", "compatibility_date", "bindings", "secrets", "workers_dev")
        }
        before.update(routes=before_routes, custom_domains=before_domains)
        return dict(script={}, secrets_set=[], diff={"before": before, "after": {}})


def main():
    binding_name = dict(type="str", required=True)
    argument_spec = dict(
        cloudflare_argument_spec(),
        account_id=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        script_path=dict(type="path"),
        script=dict(type="str"),
        main_module=dict(type="str"),
        compatibility_date=dict(type="str"),
        compatibility_flags=dict(type="list", elements="str", default=[]),
        vars=dict(type="dict", default={}),
        secrets=dict(type="dict", default={}, no_log=True),
        update_secrets=dict(type="str", choices=["on_create", "always"], default="on_create"),
        rate_limits=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=binding_name,
                namespace_id=dict(type="str", required=True),
                limit=dict(type="int", required=True),
                period=dict(type="int", choices=[10, 60], default=60),
            ),
        ),
        durable_objects=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(name=binding_name, class_name=dict(type="str", required=True)),
        ),
        workers_dev=dict(type="bool", default=True),
        routes=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(pattern=dict(type="str", required=True), zone_id=dict(type="str", required=True)),
        ),
        custom_domains=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(hostname=dict(type="str", required=True), zone_id=dict(type="str", required=True)),
        ),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("script", "script_path")],
        required_if=[
            ("state", "present", ("script", "script_path"), True),
            ("state", "present", ("compatibility_date",)),
        ],
        supports_check_mode=True,
    )
    date = module.params["compatibility_date"]
    if date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        module.fail_json(msg=f"compatibility_date must be YYYY-MM-DD, got {date!r}")
    names = list(module.params["vars"]) + list(module.params["secrets"])
    names += [b["name"] for key in ("rate_limits", "durable_objects") for b in module.params[key]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        module.fail_json(
            msg=f"binding names must be unique (vars, secrets, rate_limits, durable_objects): {duplicates}"
        )

    deployment = WorkerDeployment(module, CloudflareClient(module.params))
    try:
        result = (
            deployment.ensure_present() if module.params["state"] == "present" else deployment.ensure_absent()
        )
    except CloudflareApiError as err:
        module.fail_json(msg=str(err), status=err.status, error_codes=err.codes)
    module.exit_json(changed=deployment.changed, **result)


if __name__ == "__main__":
    main()
