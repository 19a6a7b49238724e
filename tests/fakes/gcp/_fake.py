"""The fake GCP API: one object that routes each request by host and discovery path, validates it,
applies any injected fault, and answers from the in-memory services."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ._compute import Compute, ComputeState
from ._discovery import Api
from ._errors import ApiError
from ._platform import Billing, Iam, PlatformState, ResourceManager, ServiceUsage
from ._serverless import ServerlessState, serverless_services

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_ONLY_POSTS = ("Operations.wait", ".getIamPolicy")


class Service(Protocol):
    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    host: str
    path: str
    method_id: str
    query: dict[str, list[str]]
    body: Any
    status: int

    @property
    def mutating(self) -> bool:
        # Some reads are POSTs: operation polls (`operations.wait`) and `getIamPolicy`.
        return self.method in MUTATING and not self.method_id.endswith(READ_ONLY_POSTS)


@dataclass
class Fault:
    """Answer the next `times` requests whose verb and path match with this error."""

    method: str
    path: re.Pattern[str]
    error: ApiError
    times: int


@dataclass
class FakeGcp:
    token: str = "fake-access-token"
    compute_state: ComputeState = field(default_factory=ComputeState)
    platform: PlatformState = field(default_factory=PlatformState)
    requests: list[LoggedRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    serverless: ServerlessState = field(default_factory=ServerlessState)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, tuple[Api, Service]] = {}
        for name, service in (
            ("compute.v1", Compute(self.compute_state)),
            ("serviceusage.v1", ServiceUsage(self.platform)),
            ("iam.v1", Iam(self.platform)),
            ("cloudresourcemanager.v1", ResourceManager(self.platform)),
            ("cloudbilling.v1", Billing(self.platform)),
        ):
            api = Api(name)
            self._services[api.host] = (api, service)
        # The legacy endpoint still serves Compute (google.cloud's inventory plugin calls it).
        self._services["www.googleapis.com"] = self._services["compute.googleapis.com"]
        # Cloud Run, Secret Manager, Artifact Registry, Cloud Build, Cloud Storage (_serverless.py).
        for api, service in serverless_services(self.serverless, self.platform):
            self._services[api.host] = (api, service)

    # --- control, for tests ----------------------------------------------------------------------

    def inject(
        self, method: str, path_regex: str, code: int, reason: str, message: str, times: int = 1
    ) -> None:
        self.faults.append(Fault(method, re.compile(path_regex), ApiError(code, message, reason), times))

    def fail_next_operation(self, collection: str, code: str, message: str) -> None:
        """The next insert into `collection` (e.g. `instances`) ends DONE with this error, as a GCE
        quota failure does."""
        self.compute_state.operation_faults.append(
            (collection, {"errors": [{"code": code, "message": message}]})
        )

    def mutating_requests(self) -> list[LoggedRequest]:
        return [r for r in self.requests if r.mutating]

    def resources(self, collection: str) -> dict[str, dict[str, Any]]:
        """Compute resources of one collection (`instances`, `addresses`...), by name."""
        return {r["name"]: r for r in self.compute_state.of_kind(collection)}

    # --- the HTTP face ---------------------------------------------------------------------------

    def handle(
        self, method: str, host: str, target: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            url = urlsplit(target)
            query = parse_qs(url.query, keep_blank_values=True)
            body: Any = None
            method_id = "?"
            try:
                if host.endswith(".run.app"):
                    # A Cloud Run service's own URL: its revisions answer, not the Admin API.
                    status, answer = self._services["run.googleapis.com"][1].serve(  # type: ignore[attr-defined]
                        method, host, url.path, headers, raw_body
                    )
                    self.requests.append(
                        LoggedRequest(method, host, url.path, "run.app", query, None, status)
                    )
                    return status, answer
                if raw_body and url.path.startswith("/upload/"):
                    body = raw_body  # a media upload: the bytes themselves
                elif raw_body:
                    try:
                        body = json.loads(raw_body)
                    except ValueError as err:
                        raise ApiError(400, f"Invalid JSON payload received. {err}", "parseError") from err
                if headers.get("authorization") != f"Bearer {self.token}":
                    raise ApiError(401, "Request had invalid authentication credentials.", "authError")
                api, service = self._services.get(host, (None, None))
                if api is None or service is None:
                    raise ApiError(404, f"the fake serves no API at {host}", "notFound")
                found, path_known = api.route(method, url.path)
                if found is None:
                    raise ApiError(
                        405 if path_known else 404,
                        f"{method} {url.path} is not a {api.name} method",
                        "notFound",
                    )
                method_id = found.id
                problems = api.validate_query(found, query) + api.validate_body(found, body)
                if problems:
                    self.violations += [f"{method_id}: {p}" for p in problems]
                    raise ApiError(400, "; ".join(problems), "invalid")
                self._apply_faults(method, url.path)
                params = found.path_params(url.path)
                if api.name == "compute.v1":
                    self._require_enabled("compute.googleapis.com", params["project"])
                status, answer = 200, service.handle(method_id, params, query, body)
            except ApiError as err:
                if err.code == 501:
                    self.violations.append(f"{method} {url.path}: {err.message}")
                status, answer = err.code, err.body()
            self.requests.append(LoggedRequest(method, host, url.path, method_id, query, body, status))
            return status, answer

    def _apply_faults(self, method: str, path: str) -> None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(path):
                fault.times -= 1
                raise fault.error

    def _require_enabled(self, service: str, project_id: str) -> None:
        self.platform.require_enabled(service, project_id)
