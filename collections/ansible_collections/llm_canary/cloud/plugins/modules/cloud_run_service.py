#!/usr/bin/python
# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloud_run_service
short_description: Cloud Run services as canary revisions, with tags, splits, promotion and roll back
version_added: 0.2.0
description:
  - Ensures one Cloud Run service (Cloud Run Admin API v2) runs the container described by the
    options, or is absent.
  - Reads the service first and compares only the fields the options set (Cloud Run fills in
    defaults for the others), so an unchanged run makes no write and no new revision.
  - A changed template becomes a new revision with a name chosen here (C(NAME-GENERATION-HASH)),
    so that the same call can tag it and give it its share of traffic, see O(traffic).
  - Waits for the long-running operation and for the new revision's C(Ready) condition, and fails
    with the revision's reason and message when it does not become ready; the traffic then stays
    where it was.
  - Optionally sets who may invoke the service (O(invokers)), leaving every other IAM binding alone.
author: llm-canary contributors (@llm-canary)
extends_documentation_fragment:
  - llm_canary.cloud.gcp_auth
attributes:
  check_mode:
    support: full
    description: Reads only; reports whether a revision would be created and the traffic it would get.
  diff_mode:
    support: full
    description: The template fields and traffic that differ, before and after.
options:
  name:
    description: The service name (lowercase letters, digits and hyphens, at most 49 characters).
    type: str
    required: true
  region:
    description: The Cloud Run region, such as V(us-central1).
    type: str
    required: true
  state:
    description: Whether the service should exist. V(absent) deletes it with all its revisions.
    type: str
    default: present
    choices: [present, absent]
  image:
    description:
      - The container image, best by digest (V(REGION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:...)).
      - Required when O(state=present), except with O(traffic=rollback), which never changes the template.
    type: str
  env:
    description: Plain environment variables. Never put keys here; use O(secret_env).
    type: dict
    default: {}
  secret_env:
    description:
      - Environment variables read from Secret Manager, as C(NAME) to a dict with C(secret) (the
        secret's name or full resource name) and C(version) (default V(latest); a version number
        makes a new secret version a new revision).
    type: dict
    default: {}
  port:
    description: The port the container listens on (Cloud Run passes it as E(PORT)).
    type: int
    default: 8080
  cpu:
    description: The CPU limit, such as V(1) or V(2000m).
    type: str
  memory:
    description: The memory limit, such as V(512Mi) or V(16Gi).
    type: str
  cpu_idle:
    description: Whether CPU is only allocated during requests. V(false) for GPUs and background work.
    type: bool
  gpu:
    description:
      - A GPU for each instance, such as V(nvidia-l4). Needs at least 4 CPUs, 16Gi and O(cpu_idle=false).
    type: str
  min_instances:
    description: Instances kept warm.
    type: int
  max_instances:
    description: The most instances Cloud Run may start.
    type: int
  concurrency:
    description: Requests an instance takes at once.
    type: int
  timeout:
    description: Request timeout in seconds.
    type: int
  ingress:
    description: Who may reach the service's URLs.
    type: str
    choices: [INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY, INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER]
  vpc_network:
    description: Direct VPC egress into this VPC network (name or resource path).
    type: str
  vpc_subnetwork:
    description: The subnetwork of O(vpc_network) the instances take their addresses from.
    type: str
  vpc_egress:
    description: Which traffic leaves through the VPC.
    type: str
    default: PRIVATE_RANGES_ONLY
    choices: [PRIVATE_RANGES_ONLY, ALL_TRAFFIC]
  service_account:
    description: The e-mail of the service account the revisions run as.
    type: str
  startup_probe:
    description:
      - An HTTP startup probe, as a dict with C(path) and optional C(initial_delay), C(period),
        C(timeout), C(failure_threshold) (seconds and a count).
    type: dict
  liveness_probe:
    description: An HTTP liveness probe, with the same keys as O(startup_probe).
    type: dict
  volumes:
    description:
      - Volumes mounted into the container, each a Cloud Storage bucket (O(volumes[].bucket)) or one
        version of a Secret Manager secret as a file (O(volumes[].secret)).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The volume's name in the template.
        type: str
        required: true
      mount_path:
        description: Where the volume appears in the container (a directory).
        type: str
        required: true
      bucket:
        description:
          - The Cloud Storage bucket to mount.
          - Exactly one of O(volumes[].bucket) and O(volumes[].secret).
        type: str
      read_only:
        description: Whether the bucket is mounted read-only (a secret volume always is).
        type: bool
        default: true
      secret:
        description:
          - The Secret Manager secret whose version becomes a file in O(volumes[].mount_path) (its name,
            or V(projects/PROJECT/secrets/NAME) in another project).
          - Exactly one of O(volumes[].bucket) and O(volumes[].secret).
        type: str
      version:
        description:
          - The secret's version, V(latest) or a number. A number makes a new secret version a new
            revision; with V(latest) a revision keeps the version it started with until it is replaced.
        type: str
        default: latest
      path:
        description: The file's name inside O(volumes[].mount_path) (default the secret's name).
        type: str
  args:
    description: Arguments to the image's entrypoint.
    type: list
    elements: str
  command:
    description: The entrypoint, replacing the image's.
    type: list
    elements: str
  labels:
    description: Labels of the service.
    type: dict
    default: {}
  invokers:
    description:
      - Members given C(roles/run.invoker) on the service, exactly (V(allUsers) makes it public).
      - Omitted, the service's IAM policy is left alone.
    type: list
    elements: str
  traffic:
    description:
      - V(latest) sends all traffic to the latest ready revision.
      - V(canary) gives a new revision the tag O(tag) and O(canary_percent) of the traffic; the rest
        stays with the revision that served most until now (on a new service, the first revision
        takes all of it).
      - V(promote) sends all traffic to the revision tagged O(tag) (a changed template is deployed
        first), and tags the revision that served until then V(previous).
      - V(rollback) sends all traffic to O(rollback_revision), or to the revision tagged
        V(previous); the template is not changed.
    type: str
    default: latest
    choices: [latest, canary, promote, rollback]
  tag:
    description: The tag of the canary revision; its own URL is C(https://TAG---SERVICE-...run.app).
    type: str
    default: canary
  canary_percent:
    description: The share of traffic, 0 to 100, the canary revision gets with O(traffic=canary).
    type: int
    default: 0
  rollback_revision:
    description: The revision O(traffic=rollback) sends traffic to (default the one tagged V(previous)).
    type: str
  wait_timeout:
    description: Seconds to wait for the operation and the revision's C(Ready) condition.
    type: int
    default: 900
"""

EXAMPLES = r"""
- name: Deploy the gateway as a canary revision that takes no traffic yet
  llm_canary.cloud.cloud_run_service:
    project: example-project
    region: us-central1
    name: gateway
    image: us-central1-docker.pkg.dev/example-project/llm-canary/gateway@sha256:0123abcd...
    env:
      GATEWAY_METRICS: "true"
    secret_env:
      GATEWAY_API_KEYS: {secret: gateway-api-keys, version: "3"}
    vpc_network: llm-canary
    vpc_subnetwork: llm-canary-subnet
    service_account: gateway@example-project.iam.gserviceaccount.com
    startup_probe: {path: /health}
    invokers: [allUsers]
    traffic: canary
  register: gateway

- name: Give the gateway a CA certificate as the file /etc/llm-canary/model-ca/ca.crt
  llm_canary.cloud.cloud_run_service:
    project: example-project
    region: us-central1
    name: gateway
    image: us-central1-docker.pkg.dev/example-project/llm-canary/gateway@sha256:0123abcd...
    env:
      SSL_CERT_FILE: /etc/llm-canary/model-ca/ca.crt
    volumes:
      # Secret volumes are read-only; the version pins the file, so a new one is a new revision.
      - name: model-ca
        secret: gateway-model-ca
        version: "2"
        path: ca.crt
        mount_path: /etc/llm-canary/model-ca
      - {name: models, bucket: example-models, mount_path: /models}

- name: Promote the canary once its tag URL is healthy
  llm_canary.cloud.cloud_run_service:
    project: example-project
    region: us-central1
    name: gateway
    image: "{{ gateway.image }}"
    traffic: promote
  when: gateway.created_revision | length > 0

- name: Send 10 % of real traffic to the canary first
  llm_canary.cloud.cloud_run_service:
    project: example-project
    region: us-central1
    name: gateway
    image: us-central1-docker.pkg.dev/example-project/llm-canary/gateway@sha256:0123abcd...
    traffic: canary
    canary_percent: 10

- name: Roll back to the revision that served before the last promotion
  llm_canary.cloud.cloud_run_service:
    project: example-project
    region: us-central1
    name: gateway
    traffic: rollback
"""

RETURN = r"""
url:
  description: The service's URL.
  returned: when O(state=present) and the service exists (not in check mode before it is created)
  type: str
  sample: https://gateway-abcdef1234-uc.a.run.app
tag_url:
  description: The URL of the revision tagged O(tag), empty when no revision has it.
  returned: when O(state=present)
  type: str
  sample: https://canary---gateway-abcdef1234-uc.a.run.app
revision:
  description: The revision tagged O(tag) (with O(traffic=latest), the latest ready revision).
  returned: when O(state=present)
  type: str
  sample: gateway-00002-4f1
created_revision:
  description: The revision this run created (or would in check mode); empty when the template was unchanged.
  returned: when O(state=present)
  type: str
  sample: gateway-00002-4f1
serving_revisions:
  description: Each revision with traffic, and its percent.
  returned: when O(state=present)
  type: dict
  sample: {gateway-00001-0ab: 100}
traffic:
  description: The service's traffic targets as Cloud Run reports them (revision, percent, tag, uri).
  returned: when O(state=present)
  type: list
  elements: dict
  sample: [{revision: gateway-00001-0ab, percent: 100, type: TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION}]
image:
  description: The image of the service's template.
  returned: when O(state=present)
  type: str
  sample: us-central1-docker.pkg.dev/example-project/llm-canary/gateway@sha256:0123abcd...
"""

import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_api import (  # noqa: E402
    GcpApiError,
    GcpClient,
    auth_argument_spec,
)
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_compare import differences  # noqa: E402
from ansible_collections.llm_canary.cloud.plugins.module_utils.gcp_errors import explain  # noqa: E402

RUN = "https://run.googleapis.com/v2/"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
INVOKER = "roles/run.invoker"
PREVIOUS_TAG = "previous"
PROBE_KEYS = {
    "initial_delay": "initialDelaySeconds",
    "period": "periodSeconds",
    "timeout": "timeoutSeconds",
    "failure_threshold": "failureThreshold",
}


class RevisionNotReady(Exception):
    """A revision whose Ready condition failed: its name, reason and message."""


def _prune(value):
    """The value without None, empty dicts and empty lists (what Cloud Run would not echo)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _probe(spec, port):
    if not spec:
        return None
    probe = {"httpGet": {"path": spec.get("path", "/health"), "port": port}}
    for key, field in PROBE_KEYS.items():
        if spec.get(key) is not None:
            probe[field] = int(spec[key])
    return probe


def _volume(spec):
    """One entry of the template's `volumes` (argument_spec made sure it has a bucket or a secret)."""
    if spec["bucket"]:
        return {"name": spec["name"], "gcs": {"bucket": spec["bucket"], "readOnly": spec["read_only"]}}
    # Always as an item: only an item can name the version, so that a new version is a new revision.
    item = {"path": spec["path"] or _short(spec["secret"]), "version": spec["version"]}
    return {"name": spec["name"], "secret": {"secret": spec["secret"], "items": [item]}}


def desired_template(params):
    """The revision template the options describe, in Cloud Run v2's JSON (without `revision`)."""
    port = params["port"]
    env = [{"name": k, "value": str(v)} for k, v in sorted(params["env"].items())]
    for key, ref in sorted(params["secret_env"].items()):
        if not isinstance(ref, dict) or not ref.get("secret"):
            raise GcpApiError("ARGS", "secret_env", "-", f"secret_env.{key} needs a dict with 'secret'")
        env.append(
            {
                "name": key,
                "valueSource": {
                    "secretKeyRef": {"secret": ref["secret"], "version": str(ref.get("version") or "latest")}
                },
            }
        )
    limits = {"cpu": params["cpu"], "memory": params["memory"]}
    if params["gpu"]:
        limits["nvidia.com/gpu"] = "1"
    network = None
    if params["vpc_network"] or params["vpc_subnetwork"]:
        network = {
            "networkInterfaces": [{"network": params["vpc_network"], "subnetwork": params["vpc_subnetwork"]}],
            "egress": params["vpc_egress"],
        }
    volumes = [_volume(v) for v in params["volumes"]]
    mounts = [{"name": v["name"], "mountPath": v["mount_path"]} for v in params["volumes"]]
    container = {
        "image": params["image"],
        "args": params["args"],
        "command": params["command"],
        "env": env,
        "ports": [{"containerPort": port}],
        "resources": {"limits": limits, "cpuIdle": params["cpu_idle"]},
        "startupProbe": _probe(params["startup_probe"], port),
        "livenessProbe": _probe(params["liveness_probe"], port),
        "volumeMounts": mounts,
    }
    template = {
        "containers": [container],
        "serviceAccount": params["service_account"],
        "timeout": f"{params['timeout']}s" if params["timeout"] else None,
        "maxInstanceRequestConcurrency": params["concurrency"],
        "scaling": {"minInstanceCount": params["min_instances"], "maxInstanceCount": params["max_instances"]},
        "vpcAccess": network,
        "volumes": volumes,
    }
    if params["gpu"]:
        template["nodeSelector"] = {"accelerator": params["gpu"]}
        template["gpuZonalRedundancyDisabled"] = True
    return _prune(template)


def _revision_name(params, template, generation):
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:3]
    return "{}-{:05d}-{}".format(params["name"], generation, digest)


def _short(name):
    return (name or "").rsplit("/", 1)[-1]


def _statuses(service):
    """[(revision, tag, percent)] of what the service serves now, LATEST resolved."""
    found = []
    for status in (service or {}).get("trafficStatuses", []):
        revision = status.get("revision") or _short(service.get("latestReadyRevision"))
        found.append((revision, status.get("tag", ""), int(status.get("percent", 0))))
    return found


def _normalised(traffic):
    """A traffic list in a comparable form."""
    return sorted(
        (
            t.get("type", REVISION),
            t.get("revision", "") if t.get("type", REVISION) == REVISION else "",
            t.get("tag", ""),
            int(t.get("percent", 0)),
        )
        for t in traffic
    )


def _targets(percents, tags):
    """Traffic targets from {revision: percent} and {tag: revision}, one target per revision where
    a tag and a percent meet."""
    targets = []
    tag_of = {}
    for tag, revision in sorted(tags.items()):
        if revision in percents and revision not in tag_of:
            tag_of[revision] = tag
        else:
            targets.append({"type": REVISION, "revision": revision, "tag": tag, "percent": 0})
    for revision, percent in sorted(percents.items()):
        target = {"type": REVISION, "revision": revision, "percent": percent}
        if revision in tag_of:
            target["tag"] = tag_of[revision]
        targets.append(target)
    return [{k: v for k, v in t.items() if v != 0 or k != "percent"} for t in targets]


def desired_traffic(params, current, new_revision):
    """The traffic targets the options ask for, given the service as it is."""
    mode = params["traffic"]
    if mode == "latest":
        return [{"type": LATEST, "percent": 100}]
    statuses = _statuses(current)
    tags = {tag: revision for revision, tag, _percent in statuses if tag}
    serving = {}
    for revision, _tag, percent in statuses:
        serving[revision] = serving.get(revision, 0) + percent
    candidate = new_revision or tags.get(params["tag"]) or _short((current or {}).get("latestReadyRevision"))
    stable = max(
        (r for r in serving if r != candidate and serving[r] > 0), key=lambda r: serving[r], default=""
    )
    if mode == "rollback":
        target = params["rollback_revision"] or tags.get(PREVIOUS_TAG)
        if not target:
            raise GcpApiError(
                "ROLLBACK",
                params["name"],
                "-",
                "nothing to roll back to: no revision is tagged 'previous' (set rollback_revision)",
            )
        return _targets({target: 100}, tags)
    tags[params["tag"]] = candidate
    if mode == "promote":
        if stable:
            tags[PREVIOUS_TAG] = stable
        return _targets({candidate: 100}, tags)
    share = params["canary_percent"]
    if not stable:
        percents = {candidate: 100}
    else:
        percents = {stable: 100 - share}
        if share:
            percents[candidate] = share
    return _targets({k: v for k, v in percents.items() if v}, tags)


def _ready(revision):
    """(state, reason, message) of a revision's Ready condition."""
    for condition in revision.get("conditions", []):
        if condition.get("type") == "Ready":
            reason = condition.get("revisionReason") or condition.get("reason") or condition.get("state", "")
            return condition.get("state", ""), reason, condition.get("message", "")
    return "CONDITION_PENDING", "", ""


class CloudRunService:
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.parent = "{}projects/{}/locations/{}".format(RUN, self.params["project"], self.params["region"])
        self.url = "{}/services/{}".format(self.parent, self.params["name"])

    def revision(self, name):
        return self.client.call("GET", f"{self.url}/revisions/{_short(name)}", allow_missing=True)

    def wait_ready(self, name):
        """Block until revision `name` is Ready; raise RevisionNotReady when it failed."""
        deadline = time.monotonic() + self.params["wait_timeout"]
        poll = 0.5
        while True:
            revision = self.revision(name) or {}
            state, reason, message = _ready(revision)
            if state == "CONDITION_SUCCEEDED":
                return revision
            if state == "CONDITION_FAILED":
                raise RevisionNotReady(_short(name), reason, message)
            if time.monotonic() > deadline:
                raise RevisionNotReady(
                    _short(name),
                    "PROGRESS_DEADLINE_EXCEEDED",
                    f"not ready after {self.params['wait_timeout']}s",
                )
            time.sleep(poll)
            poll = min(poll * 2, 5.0)

    def absent(self, current):
        if current is None:
            return dict(changed=False)
        if not self.module.check_mode:
            self.client.wait_done(
                RUN, self.client.call("DELETE", self.url), timeout=self.params["wait_timeout"]
            )
        return dict(changed=True, diff=dict(before={"name": self.params["name"]}, after={}))

    def present(self, current):
        params = self.params
        rollback = params["traffic"] == "rollback"
        if current is None and rollback:
            raise GcpApiError(
                "ROLLBACK", params["name"], "-", "nothing to roll back: the service does not exist"
            )
        if not rollback and not params["image"]:
            raise GcpApiError("ARGS", "image", "-", "image is required with state=present")
        template = desired_template(params) if not rollback else None
        drift = (
            []
            if rollback
            else differences(template, current["template"])
            if current
            else [{"field": "template"}]
        )
        if current is not None and not drift and not rollback:
            # The template is unchanged, but its revision may be one that never became ready.
            latest = current.get("latestCreatedRevision")
            state, reason, message = (
                _ready(self.revision(latest) or {}) if latest else ("CONDITION_SUCCEEDED", "", "")
            )
            if state == "CONDITION_FAILED":
                raise RevisionNotReady(_short(latest), reason, message)
        generation = int((current or {}).get("generation", 0)) + 1
        new_revision = _revision_name(params, template, generation) if drift else ""
        traffic = desired_traffic(params, current, new_revision)
        service = {
            "template": dict(template, revision=new_revision) if drift else current["template"],
            "traffic": traffic,
            "labels": params["labels"],
        }
        if params["ingress"]:
            service["ingress"] = params["ingress"]
        before_traffic = _normalised((current or {}).get("traffic", []))
        other = (
            differences({k: v for k, v in service.items() if k in ("labels", "ingress")}, current or {})
            if current
            else []
        )
        changed = bool(drift) or before_traffic != _normalised(traffic) or bool(other)
        diff = dict(
            before=dict(
                template={d["field"]: d.get("current") for d in drift if d["field"] != "template"},
                traffic=(current or {}).get("traffic", []),
            ),
            after=dict(
                template={d["field"]: d.get("desired") for d in drift if d["field"] != "template"}
                or (template if current is None else {}),
                traffic=traffic,
            ),
        )
        result = dict(changed=changed, created_revision=new_revision, diff=diff)
        if changed and not self.module.check_mode:
            body = {k: v for k, v in service.items() if v or k == "labels"}
            if current is None:
                operation = self.client.call(
                    "POST", self.parent + "/services", body=body, params={"serviceId": params["name"]}
                )
            else:
                operation = self.client.call("PATCH", self.url, body=body)
            try:
                self.client.wait_done(RUN, operation, timeout=params["wait_timeout"])
            except GcpApiError:
                if new_revision:
                    # The operation failed because the revision did: say why, from the revision.
                    self.wait_ready(new_revision)
                raise
            if new_revision:
                self.wait_ready(new_revision)
            current = self.client.call("GET", self.url)
        if params["invokers"] is not None:
            result["changed"] |= self.invokers(current)
        return self.report(result, current, traffic, new_revision)

    def invokers(self, current):
        """Give roles/run.invoker to exactly `invokers`; True when the policy was (or would be) changed."""
        wanted = sorted(set(self.params["invokers"]))
        if current is None:
            return bool(wanted)
        policy = self.client.call("GET", self.url + ":getIamPolicy")
        bindings = policy.get("bindings", [])
        have = sorted(
            {
                m
                for b in bindings
                if b.get("role") == INVOKER and not b.get("condition")
                for m in b.get("members", [])
            }
        )
        if have == wanted:
            return False
        if not self.module.check_mode:
            kept = [b for b in bindings if b.get("role") != INVOKER or b.get("condition")]
            if wanted:
                kept.append({"role": INVOKER, "members": wanted})
            policy["bindings"] = kept
            self.client.call("POST", self.url + ":setIamPolicy", body={"policy": policy})
        return True

    def report(self, result, service, traffic, new_revision):
        params = self.params
        if service is None:  # check mode, before the service exists
            return dict(
                result,
                url="",
                tag_url="",
                revision=new_revision,
                serving_revisions={new_revision: 100},
                traffic=traffic,
                image=params["image"],
            )
        statuses = service.get("trafficStatuses", [])
        tagged = next((s for s in statuses if s.get("tag") == params["tag"]), {})
        serving = {}
        for revision, _tag, percent in _statuses(service):
            if percent:
                serving[revision] = serving.get(revision, 0) + percent
        revision = tagged.get("revision") or _short(service.get("latestReadyRevision"))
        if self.module.check_mode and new_revision:
            revision = new_revision
        return dict(
            result,
            url=service.get("uri", ""),
            tag_url=tagged.get("uri", ""),
            revision=revision,
            serving_revisions=serving,
            traffic=statuses,
            image=service["template"]["containers"][0]["image"],
        )

    def run(self):
        current = self.client.call("GET", self.url, allow_missing=True)
        if self.params["state"] == "absent":
            return self.absent(current)
        return self.present(current)


def main():
    argument_spec = auth_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        region=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        image=dict(type="str"),
        env=dict(type="dict", default={}),
        # References to Secret Manager secrets, not secret values.
        secret_env=dict(type="dict", default={}, no_log=False),
        port=dict(type="int", default=8080),
        cpu=dict(type="str"),
        memory=dict(type="str"),
        cpu_idle=dict(type="bool"),
        gpu=dict(type="str"),
        min_instances=dict(type="int"),
        max_instances=dict(type="int"),
        concurrency=dict(type="int"),
        timeout=dict(type="int"),
        ingress=dict(
            type="str",
            choices=[
                "INGRESS_TRAFFIC_ALL",
                "INGRESS_TRAFFIC_INTERNAL_ONLY",
                "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            ],
        ),
        vpc_network=dict(type="str"),
        vpc_subnetwork=dict(type="str"),
        vpc_egress=dict(
            type="str", default="PRIVATE_RANGES_ONLY", choices=["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"]
        ),
        service_account=dict(type="str"),
        startup_probe=dict(type="dict"),
        liveness_probe=dict(type="dict"),
        volumes=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                mount_path=dict(type="str", required=True),
                bucket=dict(type="str"),
                read_only=dict(type="bool", default=True),
                # A reference to a Secret Manager secret, not a secret value.
                secret=dict(type="str", no_log=False),
                version=dict(type="str", default="latest"),
                path=dict(type="str"),
            ),
            required_one_of=[("bucket", "secret")],
            mutually_exclusive=[("bucket", "secret")],
        ),
        args=dict(type="list", elements="str"),
        command=dict(type="list", elements="str"),
        labels=dict(type="dict", default={}),
        invokers=dict(type="list", elements="str"),
        traffic=dict(type="str", default="latest", choices=["latest", "canary", "promote", "rollback"]),
        tag=dict(type="str", default="canary"),
        canary_percent=dict(type="int", default=0),
        rollback_revision=dict(type="str"),
        wait_timeout=dict(type="int", default=900),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_together=[("vpc_network", "vpc_subnetwork")],
        supports_check_mode=True,
    )
    what = "Cloud Run service {} in {}".format(module.params["name"], module.params["region"])
    if not 0 <= module.params["canary_percent"] <= 100:
        module.fail_json(
            msg="canary_percent must be between 0 and 100, got {}".format(module.params["canary_percent"])
        )
    try:
        result = CloudRunService(module, GcpClient(module)).run()
    except RevisionNotReady as err:
        name, reason, message = err.args
        module.fail_json(
            msg=f"{what}: revision {name} did not become ready ({reason}): {message}; "
            "the traffic stays with the revisions that served before",
            revision=name,
            reason=reason,
        )
    except GcpApiError as err:
        module.fail_json(
            msg=explain(what, err, "roles/run.admin and roles/iam.serviceAccountUser"),
            status=err.status,
            reason=err.reason,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
