"""The serverless side of the fake GCP: Cloud Run Admin v2, Secret Manager v1, Artifact Registry v1,
Cloud Build v1 and Cloud Storage v1 (buckets and the media upload), in memory.

Each answers as the real API does where the gateway play could trip on it: long-running operations
that are done at their third read; Cloud Run revisions named by the template (or by the service's
generation), traffic that must add up to 100 and name revisions that exist, tags with their own
URLs, a revision that never becomes ready (its reason in the revision's `Ready` condition and in the
operation's error, the traffic left where it was); secrets whose versions count up; a build that
pushes `images` into an Artifact Registry repository that must exist; a bucket that cannot be
deleted while it holds objects. Every API must be enabled in the project first.

The revisions also serve HTTP: a request to a service's `*.run.app` URL (or a tag's) is answered by
a small stand-in of the gateway, built from the revision's own environment and secrets.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ._discovery import Api, Method
from ._errors import ApiError, already_exists, invalid, not_found, service_disabled
from ._platform import PlatformState

TIMESTAMP = "2026-12-01T12:00:00.000000Z"
OPERATION_READS = 3
_REGION_CODES = {"us-central1": "uc", "us-east1": "ue", "europe-west1": "ew", "europe-west4": "ez"}
_SERVICE_ID = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
_GRPC_FAILED_PRECONDITION = 9


@dataclass
class LongRunning:
    """A `google.longrunning.Operation`, done at its OPERATION_READS-th read, when `finish` runs."""

    body: dict[str, Any]
    finish: Any
    reads: int = 0


@dataclass
class ServerlessState:
    operations: dict[str, LongRunning] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)
    # image reference without tag -> {tag: digest}
    images: dict[str, dict[str, str]] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Set by tests: revisions of an image containing the key never become ready (reason, message);
    # revisions of an image containing a key of `unhealthy_images` start but answer 503/500.
    failing_images: dict[str, tuple[str, str]] = field(default_factory=dict)
    unhealthy_images: set[str] = field(default_factory=set)
    failing_builds: list[str] = field(default_factory=list)
    served: list[tuple[str, str]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)

    def long_running(self, name: str, finish: Any, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "done": False}
        if metadata:
            body["metadata"] = metadata
        self.operations[name] = LongRunning(body, finish)
        return copy.deepcopy(body)

    def read_operation(self, name: str) -> dict[str, Any]:
        op = self.operations.get(name)
        if op is None:
            raise not_found(name)
        op.reads += 1
        if op.reads >= OPERATION_READS and not op.body["done"]:
            op.body["done"] = True
            try:
                op.body["response"] = op.finish()
            except ApiError as err:
                op.body["error"] = {"code": err.code, "message": err.message}
        return copy.deepcopy(op.body)


class _Base:
    api_name = ""

    def __init__(self, state: ServerlessState, platform: PlatformState) -> None:
        self.state = state
        self.platform = platform

    def _project(self, ref: str) -> Any:
        project = self.platform.project(ref)
        if self.api_name not in project.services:
            raise service_disabled(self.api_name, project.project_id)
        return project


def _unimplemented(method_id: str) -> ApiError:
    return ApiError(501, f"the fake does not implement {method_id}", "notImplemented")


def _policy_answer(policy: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(policy.get("_body", {})), "etag": f"BwY{policy.get('_writes', 0):05d}="}


def _set_policy(store: dict[str, Any], key: str, body: dict[str, Any]) -> dict[str, Any]:
    current = store.setdefault(key, {"_body": {"version": 1}, "_writes": 0})
    wanted = body.get("policy", {})
    if "etag" in wanted and wanted["etag"] != _policy_answer(current)["etag"]:
        raise ApiError(409, "There were concurrent policy changes.", "aborted")
    current["_body"] = {k: copy.deepcopy(v) for k, v in wanted.items() if k != "etag"}
    current["_writes"] += 1
    return _policy_answer(current)


# --- Cloud Run Admin API v2 ------------------------------------------------------------------------


class CloudRun(_Base):
    api_name = "run.googleapis.com"

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        project = self._project(params["projectsId"])
        location = params["locationsId"]
        parent = f"projects/{project.project_id}/locations/{location}"
        verb = method_id.removeprefix("run.projects.locations.")
        if verb == "operations.get":
            return self.state.read_operation(f"{parent}/operations/{params['operationsId']}")
        if verb == "services.create":
            service_id = query.get("serviceId", [""])[0]
            if not _SERVICE_ID.fullmatch(service_id):
                raise invalid(f"serviceId '{service_id}' must match {_SERVICE_ID.pattern}")
            name = f"{parent}/services/{service_id}"
            if name in self.state.services:
                raise already_exists(name)
            if body.get("name"):
                raise invalid("service.name must be empty on create; the name comes from serviceId")
            return self._change(project, name, body, creating=True)
        name = f"{parent}/services/{params.get('servicesId', '')}"
        if verb == "services.list":
            return {
                "services": [self._answer(s) for k, s in self.state.services.items() if k.startswith(parent)]
            }
        if verb in ("services.getIamPolicy", "services.setIamPolicy"):
            self._existing(name)
            if verb.endswith("getIamPolicy"):
                return _policy_answer(self.state.service_policies.get(name, {"_body": {"version": 1}}))
            return _set_policy(self.state.service_policies, name, body)
        if verb.startswith("services.revisions."):
            self._existing(name)
            if verb.endswith(".list"):
                return {
                    "revisions": [
                        copy.deepcopy(r) for k, r in self.state.revisions.items() if r["service"] == name
                    ]
                }
            revision = self.state.revisions.get(f"{name}/revisions/{params['revisionsId']}")
            if revision is None:
                raise not_found(f"{name}/revisions/{params['revisionsId']}")
            if verb.endswith(".get"):
                return copy.deepcopy(revision)
            raise _unimplemented(method_id)
        if verb == "services.get":
            return self._answer(self._existing(name))
        if verb == "services.patch":
            if name not in self.state.services and query.get("allowMissing", ["false"])[0] != "true":
                raise not_found(name)
            if query.get("updateMask"):
                raise _unimplemented(f"{method_id} with updateMask")
            return self._change(project, name, body, creating=name not in self.state.services)
        if verb == "services.delete":
            self._existing(name)
            return self.state.long_running(
                f"{parent}/operations/{self.state.next_id():08x}-delete", lambda: self._delete(name)
            )
        raise _unimplemented(method_id)

    def _existing(self, name: str) -> dict[str, Any]:
        service = self.state.services.get(name)
        if service is None:
            raise not_found(name)
        return service

    # Checked at the call, as Cloud Run does before it answers with an operation.
    def _change(self, project: Any, name: str, body: dict[str, Any], creating: bool) -> dict[str, Any]:
        service_id = name.rsplit("/", 1)[1]
        current = self.state.services.get(name)
        template = copy.deepcopy(body.get("template") or {})
        if not template.get("containers"):
            raise invalid("template.containers: at least one container is required")
        for container in template["containers"]:
            if not container.get("image"):
                raise invalid("template.containers[].image is required")
        revision = template.get("revision", "")
        if revision and not revision.startswith(service_id + "-"):
            raise invalid(
                f"template.revision '{revision}' must be prefixed by the service name '{service_id}-'"
            )
        new_template = (
            current is None
            or _strip(current["template"], "revision")
            != _strip(_with_defaults(template, project), "revision")
            or (revision and revision != current["template"].get("revision"))
        )
        generation = int(current["generation"]) + 1 if current else 1
        new_revision = ""
        if new_template:
            digest = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:3]
            new_revision = revision or f"{service_id}-{generation:05d}-{digest}"
            if f"{name}/revisions/{new_revision}" in self.state.revisions:
                raise ApiError(
                    409,
                    f"Revision named '{new_revision}' with different configuration already exists.",
                    "alreadyExists",
                )
        traffic = copy.deepcopy(
            body.get("traffic") or [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]
        )
        known = {r.rsplit("/", 1)[1] for r in self.state.revisions if r.startswith(name + "/")} | {
            new_revision
        }
        if sum(int(t.get("percent", 0)) for t in traffic) != 100:
            raise invalid("Traffic targets must add up to 100 percent.")
        tags = [t["tag"] for t in traffic if t.get("tag")]
        if len(tags) != len(set(tags)):
            raise invalid("A tag may name only one traffic target.")
        for target in traffic:
            if (
                target.get("type") == "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
                and target.get("revision") not in known
            ):
                raise invalid(
                    f"Revision '{target.get('revision')}' does not exist in service '{service_id}'."
                )
        operation = f"{name.rsplit('/services/', 1)[0]}/operations/{self.state.next_id():08x}-{service_id}"
        return self.state.long_running(
            operation,
            lambda: self._apply(project, name, body, template, new_revision, traffic, generation),
            {"@type": "type.googleapis.com/google.cloud.run.v2.Service", "name": name},
        )

    def _apply(
        self,
        project: Any,
        name: str,
        body: dict[str, Any],
        template: dict[str, Any],
        new_revision: str,
        traffic: list[dict[str, Any]],
        generation: int,
    ) -> dict[str, Any]:
        current = self.state.services.get(name)
        service = (
            copy.deepcopy(current)
            if current
            else {
                "name": name,
                "uid": hashlib.md5(name.encode()).hexdigest(),
                "createTime": TIMESTAMP,
                "creator": "deployer@example.com",
                "uri": _url(name, project.number),
                "urls": [_url(name, project.number)],
                "launchStage": "GA",
            }
        )
        for key in ("labels", "annotations", "description", "ingress", "invokerIamDisabled", "scaling"):
            if key in body:
                service[key] = copy.deepcopy(body[key])
            else:
                service.pop(key, None)
        service.setdefault("ingress", "INGRESS_TRAFFIC_ALL")
        service["template"] = _with_defaults(template, project)
        service["generation"] = service["observedGeneration"] = str(generation)
        service["updateTime"] = TIMESTAMP
        service["etag"] = f'"g{generation}"'
        failure = None
        if new_revision:
            failure = self._make_revision(name, new_revision, service["template"], generation)
            service["latestCreatedRevision"] = f"{name}/revisions/{new_revision}"
            if failure is None:
                service["latestReadyRevision"] = service["latestCreatedRevision"]
        if failure is not None:
            _reason, message = failure
            text = f"Revision '{new_revision}' is not ready and cannot serve traffic. {message}"
            service["terminalCondition"] = _condition(
                "Ready", "CONDITION_FAILED", text, reason="REVISION_FAILED"
            )
            service["conditions"] = [service["terminalCondition"]]
            self.state.services[name] = service
            raise ApiError(_GRPC_FAILED_PRECONDITION, text, "FAILED_PRECONDITION")
        service["traffic"] = traffic
        service["trafficStatuses"] = self._statuses(service, project)
        service["terminalCondition"] = _condition("Ready", "CONDITION_SUCCEEDED")
        service["conditions"] = [
            service["terminalCondition"],
            _condition("ConfigurationsReady", "CONDITION_SUCCEEDED"),
            _condition("RoutesReady", "CONDITION_SUCCEEDED"),
        ]
        self.state.services[name] = service
        return self._answer(service)

    def _make_revision(
        self, service: str, revision: str, template: dict[str, Any], generation: int
    ) -> tuple[str, str] | None:
        image = template["containers"][0]["image"]
        failure = next((f for key, f in self.state.failing_images.items() if key in image), None)
        body = {
            k: copy.deepcopy(v) for k, v in template.items() if k not in ("revision", "labels", "annotations")
        }
        body.update(
            name=f"{service}/revisions/{revision}",
            uid=hashlib.md5(revision.encode()).hexdigest(),
            generation="1",
            service=service,
            createTime=TIMESTAMP,
            observedGeneration="1",
            logUri="https://console.cloud.google.com/logs/viewer",
            labels={"serving.knative.dev/configurationGeneration": str(generation)},
        )
        if failure is None:
            body["conditions"] = [
                _condition("Ready", "CONDITION_SUCCEEDED"),
                _condition("ContainerHealthy", "CONDITION_SUCCEEDED"),
                _condition("ResourcesAvailable", "CONDITION_SUCCEEDED"),
            ]
        else:
            reason, message = failure
            body["conditions"] = [
                _condition("Ready", "CONDITION_FAILED", message, revision_reason=reason),
                _condition("ContainerHealthy", "CONDITION_FAILED", message, revision_reason=reason),
            ]
        self.state.revisions[body["name"]] = body
        return failure

    def _statuses(self, service: dict[str, Any], project: Any) -> list[dict[str, Any]]:
        statuses = []
        for target in service["traffic"]:
            status = copy.deepcopy(target)
            if target.get("type") == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST":
                status["revision"] = service.get("latestReadyRevision", "").rsplit("/", 1)[-1]
            if target.get("tag"):
                status["uri"] = _url(service["name"], project.number, target["tag"])
            statuses.append(status)
        return statuses

    def _delete(self, name: str) -> dict[str, Any]:
        service = self.state.services.pop(name)
        for key in [k for k in self.state.revisions if k.startswith(name + "/")]:
            del self.state.revisions[key]
        self.state.service_policies.pop(name, None)
        return service

    @staticmethod
    def _answer(service: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(service)

    # --- the revisions' HTTP face, a stand-in of the gateway ------------------------------------

    def serve(
        self, method: str, host: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        label = host.split(".", 1)[0]
        tag, _, base = label.rpartition("---")
        service = next(
            (
                s
                for s in self.state.services.values()
                if s.get("uri", "").split("//", 1)[1].split(".", 1)[0] == base
            ),
            None,
        )
        if service is None:
            return 404, {"error": f"no Cloud Run service at {host}"}
        statuses = service.get("trafficStatuses", [])
        if tag:
            chosen = next((s["revision"] for s in statuses if s.get("tag") == tag), "")
        else:
            serving = [s for s in statuses if int(s.get("percent", 0)) > 0]
            slot = len(self.state.served) % 100
            chosen, total = "", 0
            for status in serving:
                total += int(status["percent"])
                if slot < total:
                    chosen = status["revision"]
                    break
        revision = self.state.revisions.get(f"{service['name']}/revisions/{chosen}")
        if revision is None:
            return 404, {"error": f"tag {tag!r} names no revision"}
        self.state.served.append((chosen, path))
        container = revision["containers"][0]
        unhealthy = any(key in container["image"] for key in self.state.unhealthy_images)
        if path == "/health":
            return (503, {"status": "starting"}) if unhealthy else (200, {"status": "ok", "revision": chosen})
        env = self._env(container)
        keys = [k.strip() for k in env.get("GATEWAY_API_KEYS", "").split(",") if k.strip()]
        if headers.get("authorization", "") not in [f"Bearer {k}" for k in keys]:
            return 401, {
                "error": {
                    "message": "missing or invalid key",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        if unhealthy:
            return 500, {
                "error": {"message": "internal error", "type": "server_error", "param": None, "code": None}
            }
        models = sorted(
            {m for b in json.loads(env.get("GATEWAY_BACKENDS") or "[]") for m in b.get("models", [])}
        )
        if method == "GET" and path == "/v1/models":
            return 200, {
                "object": "list",
                "data": [{"id": m, "object": "model", "owned_by": "llm-canary"} for m in models],
            }
        if method == "POST" and path == "/v1/chat/completions":
            request = json.loads(raw_body or b"{}")
            if request.get("model") not in models:
                return 404, {
                    "error": {
                        "message": f"unknown model {request.get('model')}",
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "model_not_found",
                    }
                }
            return 200, {
                "id": f"chatcmpl-{len(self.state.served)}",
                "object": "chat.completion",
                "created": 1764590400,
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Hello from {chosen}."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
            }
        return 404, {
            "error": {
                "message": f"no route {method} {path}",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {}
        for var in container.get("env", []):
            ref = var.get("valueSource", {}).get("secretKeyRef")
            if ref is None:
                env[var["name"]] = var.get("value", "")
                continue
            secret = ref["secret"]
            if not secret.startswith("projects/"):
                secret = next((k for k in self.state.secrets if k.endswith("/secrets/" + secret)), secret)
            versions = self.state.secrets.get(secret, {}).get("_versions", [])
            version = ref.get("version", "latest")
            index = len(versions) if version == "latest" else int(version)
            env[var["name"]] = versions[index - 1].decode() if 0 < index <= len(versions) else ""
        return env


def _url(name: str, number: str, tag: str = "") -> str:
    parts = name.split("/")
    service, region = parts[5], parts[3]
    digest = hashlib.sha1(f"{number}".encode()).hexdigest()[:10]
    prefix = f"{tag}---" if tag else ""
    return f"https://{prefix}{service}-{digest}-{_REGION_CODES.get(region, 'xx')}.a.run.app"


def _condition(
    kind: str, state: str, message: str = "", reason: str = "", revision_reason: str = ""
) -> dict[str, Any]:
    condition = {"type": kind, "state": state, "lastTransitionTime": TIMESTAMP}
    if message:
        condition["message"] = message
    if reason:
        condition["reason"] = reason
    if revision_reason:
        condition["revisionReason"] = revision_reason
    if state == "CONDITION_FAILED":
        condition["severity"] = "ERROR"
    return condition


def _strip(template: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in template.items() if k != key}


def _with_defaults(template: dict[str, Any], project: Any) -> dict[str, Any]:
    """The template as Cloud Run stores it: server defaults filled in where the caller left them out."""
    filled = copy.deepcopy(template)
    filled.setdefault("serviceAccount", f"{project.number}-compute@developer.gserviceaccount.com")
    filled.setdefault("timeout", "300s")
    filled.setdefault("maxInstanceRequestConcurrency", 80)
    filled.setdefault("scaling", {}).setdefault("maxInstanceCount", 100)
    filled.setdefault("executionEnvironment", "EXECUTION_ENVIRONMENT_GEN2")
    for container in filled["containers"]:
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
        resources.setdefault("cpuIdle", True)
        container.setdefault("ports", [{"name": "http1", "containerPort": 8080}])
        port = container["ports"][0].get("containerPort", 8080)
        container.setdefault(
            "startupProbe",
            {"timeoutSeconds": 240, "periodSeconds": 240, "failureThreshold": 1, "tcpSocket": {"port": port}},
        )
    return filled


# --- Secret Manager v1 ------------------------------------------------------------------------------


class SecretManager(_Base):
    api_name = "secretmanager.googleapis.com"

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        project = self._project(params["projectsId"])
        verb = method_id.removeprefix("secretmanager.projects.")
        parent = f"projects/{project.number}"
        if verb == "secrets.create":
            secret_id = query.get("secretId", [""])[0]
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret_id):
                raise invalid(f"secretId '{secret_id}' is not a valid secret ID")
            if not body.get("replication"):
                raise invalid("Secret.replication is required")
            name = f"{parent}/secrets/{secret_id}"
            if name in self.state.secrets:
                raise ApiError(409, f"Secret [{name}] already exists.", "alreadyExists")
            secret = {
                **copy.deepcopy(body),
                "name": name,
                "createTime": TIMESTAMP,
                "etag": '"e1"',
                "_versions": [],
            }
            self.state.secrets[name] = secret
            return _public(secret)
        name = f"{parent}/secrets/{params['secretsId']}"
        secret = self.state.secrets.get(name)
        if secret is None:
            raise ApiError(404, f"Secret [{name}] not found or has no versions.", "notFound")
        if verb == "secrets.get":
            return _public(secret)
        if verb == "secrets.delete":
            del self.state.secrets[name]
            return {}
        if verb == "secrets.addVersion":
            data = body.get("payload", {}).get("data", "")
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError as err:
                raise invalid("payload.data must be base64") from err
            secret["_versions"].append(raw)
            return {
                "name": f"{name}/versions/{len(secret['_versions'])}",
                "createTime": TIMESTAMP,
                "state": "ENABLED",
            }
        if verb == "secrets.versions.access":
            versions = secret["_versions"]
            wanted = params["versionsId"]
            index = len(versions) if wanted == "latest" else int(wanted) if wanted.isdigit() else 0
            if not 0 < index <= len(versions):
                raise ApiError(404, f"Secret Version [{name}/versions/{wanted}] not found.", "notFound")
            return {
                "name": f"{name}/versions/{index}",
                "payload": {"data": base64.b64encode(versions[index - 1]).decode()},
            }
        if verb == "secrets.getIamPolicy":
            return _policy_answer(secret.setdefault("_policy", {"_body": {"version": 1}, "_writes": 0}))
        if verb == "secrets.setIamPolicy":
            return _set_policy(secret, "_policy", body)
        raise _unimplemented(method_id)


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in resource.items() if not k.startswith("_")}


# --- Artifact Registry v1 ---------------------------------------------------------------------------


class ArtifactRegistry(_Base):
    api_name = "artifactregistry.googleapis.com"

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        project = self._project(params["projectsId"])
        parent = f"projects/{project.project_id}/locations/{params['locationsId']}"
        verb = method_id.removeprefix("artifactregistry.projects.locations.")
        if verb == "operations.get":
            return self.state.read_operation(f"{parent}/operations/{params['operationsId']}")
        if verb == "repositories.create":
            repo_id = query.get("repositoryId", [""])[0]
            name = f"{parent}/repositories/{repo_id}"
            if name in self.state.repositories:
                raise already_exists(name)
            if body.get("format") != "DOCKER":
                raise invalid("the fake serves DOCKER repositories only")
            repo = {
                **copy.deepcopy(body),
                "name": name,
                "createTime": TIMESTAMP,
                "updateTime": TIMESTAMP,
                "mode": "STANDARD_REPOSITORY",
                "registryUri": f"{params['locationsId']}-docker.pkg.dev/{project.project_id}/{repo_id}",
            }

            def finish() -> dict[str, Any]:
                self.state.repositories[name] = repo
                return copy.deepcopy(repo)

            return self.state.long_running(f"{parent}/operations/{self.state.next_id():08x}", finish)
        name = f"{parent}/repositories/{params['repositoriesId']}"
        repo = self.state.repositories.get(name)
        if repo is None:
            raise not_found(name)
        if verb == "repositories.get":
            return copy.deepcopy(repo)
        if verb == "repositories.delete":

            def remove() -> dict[str, Any]:
                self.state.repositories.pop(name, None)
                self.state.images.pop(repo["registryUri"], None)
                return {}

            return self.state.long_running(f"{parent}/operations/{self.state.next_id():08x}", remove)
        if verb == "repositories.packages.tags.get":
            image = f"{repo['registryUri']}/{params['packagesId']}"
            digest = self.state.images.get(image, {}).get(params["tagsId"])
            if digest is None:
                raise not_found(f"{name}/packages/{params['packagesId']}/tags/{params['tagsId']}")
            return {
                "name": f"{name}/packages/{params['packagesId']}/tags/{params['tagsId']}",
                "version": f"{name}/packages/{params['packagesId']}/versions/{digest}",
            }
        raise _unimplemented(method_id)


# --- Cloud Build v1 ---------------------------------------------------------------------------------


class CloudBuild(_Base):
    api_name = "cloudbuild.googleapis.com"

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        if method_id == "cloudbuild.operations.get":
            return self.state.read_operation(f"operations/{params['operationsId']}")
        project = self._project(params["projectId"])
        if method_id == "cloudbuild.projects.builds.get":
            build = self.state.builds.get(params["id"])
            if build is None:
                raise not_found(params["id"])
            return copy.deepcopy(build)
        if method_id != "cloudbuild.projects.builds.create":
            raise _unimplemented(method_id)
        source = body.get("source", {}).get("storageSource", {})
        if not body.get("steps"):
            raise invalid("build.steps: at least one step is required")
        build_id = f"b{self.state.next_id():07d}-0000-4000-8000-000000000000"
        build = {
            **copy.deepcopy(body),
            "id": build_id,
            "projectId": project.project_id,
            "status": "QUEUED",
            "createTime": TIMESTAMP,
            "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{build_id}",
        }
        self.state.builds[build_id] = build

        def finish() -> dict[str, Any]:
            blob = self.state.objects.get((source.get("bucket", ""), source.get("object", "")))
            failure = self.state.failing_builds.pop(0) if self.state.failing_builds else ""
            if blob is None:
                failure = f"storage source gs://{source.get('bucket')}/{source.get('object')} not found"
            results = []
            for image in body.get("images", []):
                repository, tag = image.rsplit(":", 1)
                registry = repository.rsplit("/", 1)[0]
                if not any(r["registryUri"] == registry for r in self.state.repositories.values()):
                    failure = failure or f"denied: repository {registry} does not exist"
                    continue
                digest = "sha256:" + hashlib.sha256((blob or b"") + image.encode()).hexdigest()
                self.state.images.setdefault(repository, {})[tag] = digest
                results.append({"name": image, "digest": digest})
            build.update(
                status="FAILURE" if failure else "SUCCESS", finishTime=TIMESTAMP, results={"images": results}
            )
            if failure:
                build["statusDetail"] = failure
                raise ApiError(2, f"Build failed; check build logs for details: {failure}", "FAILURE")
            return copy.deepcopy(build)

        return self.state.long_running(
            f"operations/{build_id}",  # one path segment: the discovery flatPath routes only that
            finish,
            {
                "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                "build": copy.deepcopy(build),
            },
        )


# --- Cloud Storage v1: buckets, and objects through the media upload ------------------------------


class Storage(_Base):
    api_name = "storage.googleapis.com"

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        if method_id == "storage.buckets.insert":
            project = self._project(query.get("project", [""])[0])
            name = body.get("name", "")
            if name in self.state.buckets:
                raise ApiError(
                    409,
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    "conflict",
                )
            bucket = {
                **copy.deepcopy(body),
                "kind": "storage#bucket",
                "id": name,
                "projectNumber": project.number,
                "timeCreated": TIMESTAMP,
                "metageneration": "1",
                "storageClass": body.get("storageClass", "STANDARD"),
            }
            self.state.buckets[name] = bucket
            return copy.deepcopy(bucket)
        bucket_name = params["bucket"]
        bucket = self.state.buckets.get(bucket_name)
        if bucket is None:
            raise ApiError(404, "The specified bucket does not exist.", "notFound")
        self._project(bucket["projectNumber"])
        if method_id == "storage.buckets.get":
            return copy.deepcopy(bucket)
        if method_id == "storage.buckets.delete":
            if any(b == bucket_name for b, _ in self.state.objects):
                raise ApiError(409, "The bucket you tried to delete is not empty.", "conflict")
            del self.state.buckets[bucket_name]
            return {}
        if method_id == "storage.objects.insert":
            if query.get("uploadType", [""])[0] != "media" or not isinstance(body, bytes):
                raise _unimplemented("storage.objects.insert other than uploadType=media")
            name = query.get("name", [""])[0]
            if not name:
                raise invalid("Required parameter: name")
            self.state.objects[(bucket_name, name)] = body
            return {
                "kind": "storage#object",
                "bucket": bucket_name,
                "name": name,
                "size": str(len(body)),
                "md5Hash": base64.b64encode(hashlib.md5(body).digest()).decode(),
                "generation": "1",
            }
        if method_id == "storage.objects.list":
            return {
                "kind": "storage#objects",
                "items": [
                    {"kind": "storage#object", "bucket": b, "name": n, "size": str(len(d))}
                    for (b, n), d in sorted(self.state.objects.items())
                    if b == bucket_name
                ],
            }
        if method_id == "storage.objects.delete":
            if self.state.objects.pop((bucket_name, unquote(params["object"])), None) is None:
                raise ApiError(404, "No such object.", "notFound")
            return {}
        raise _unimplemented(method_id)


class MediaApi(Api):
    """A discovery document whose media-upload paths (`/upload/storage/v1/b/{bucket}/o`) route to
    their method too, with the raw bytes as the body."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        uploads = []
        for method in self.methods:
            simple = method.spec.get("mediaUpload", {}).get("protocols", {}).get("simple")
            if simple:
                spec = dict(method.spec, flatPath=simple["path"].lstrip("/"), path=simple["path"].lstrip("/"))
                uploads.append(_upload_method(spec))
        self.methods += uploads
        self.upload_ids = {m.id for m in uploads}

    def validate_body(self, method: Method, body: Any) -> list[str]:
        if isinstance(body, bytes):
            return [] if method.spec.get("supportsMediaUpload") else ["this method takes no media"]
        return super().validate_body(method, body)


def _upload_method(spec: dict[str, Any]) -> Method:
    from ._discovery import _method

    return _method("", spec)


def serverless_services(state: ServerlessState, platform: PlatformState) -> list[tuple[Api, Any]]:
    """(discovery document, service) pairs for FakeGcp to route to."""
    run = CloudRun(state, platform)
    return [
        (Api("run.v2"), run),
        (Api("secretmanager.v1"), SecretManager(state, platform)),
        (Api("artifactregistry.v1"), ArtifactRegistry(state, platform)),
        (Api("cloudbuild.v1"), CloudBuild(state, platform)),
        (MediaApi("storage.v1"), Storage(state, platform)),
    ]
