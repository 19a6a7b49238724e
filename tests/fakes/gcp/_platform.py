"""The project-level APIs around Compute Engine: Service Usage, IAM service accounts, Cloud
Resource Manager v1 projects and Cloud Billing project links, in memory.

A fresh project misbehaves as a real one does, when a test asks: an API enabled less than
`PlatformState.propagation_s` ago still answers 403 SERVICE_DISABLED, a service account made less
than `iam_propagation_s` ago is unknown to setIamPolicy (400), user credentials without a quota
project are refused by Service Usage (`adc_without_quota_project`), and a project without a billing
account cannot enable billed APIs (projects made through the API start without one)."""

from __future__ import annotations

import copy
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ._errors import (
    ApiError,
    already_exists,
    billing_not_found,
    invalid,
    not_found,
    quota_project_required,
    service_account_missing,
    service_disabled,
)

OWNER = {"role": "roles/owner", "members": ["user:owner@example.com"]}
# The billing account test projects are linked to, and the one a test may link a new project to.
BILLING_ACCOUNT = "billingAccounts/012345-6789AB-CDEF01"
# APIs that need a billing account to be enabled.
BILLED_APIS = frozenset(
    {
        "compute.googleapis.com",
        "run.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "secretmanager.googleapis.com",
    }
)
_SERVICE_ACCOUNT_MEMBER = re.compile(r"^serviceAccount:(.+@(.+)\.iam\.gserviceaccount\.com)$")


@dataclass
class Project:
    project_id: str
    number: str
    parent: dict[str, str] | None = None
    services: set[str] = field(default_factory=set)
    service_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Project IAM policy, as last written; `writes` makes the etag change with every write.
    policy: dict[str, Any] = field(default_factory=lambda: {"version": 1, "bindings": [copy.deepcopy(OWNER)]})
    writes: int = 0
    billing_account: str = ""
    # When each service was enabled and each service account made (time.monotonic()).
    enabled_at: dict[str, float] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)


@dataclass
class PlatformState:
    projects: dict[str, Project] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(123456789012))
    # Fresh-project behaviour a test can switch on (see the module docstring).
    propagation_s: float = 0.0
    iam_propagation_s: float = 0.0
    adc_without_quota_project: bool = False
    billing_accounts: set[str] = field(default_factory=lambda: {BILLING_ACCOUNT})

    def add_project(
        self, project_id: str, parent: dict[str, str] | None = None, billing_account: str = BILLING_ACCOUNT
    ) -> Project:
        project = Project(project_id, str(next(self._numbers)), parent, billing_account=billing_account)
        self.projects[project_id] = project
        return project

    def require_enabled(self, service: str, project_ref: str) -> Project:
        """The project, if `service` is enabled there and the change has propagated."""
        project = self.project(project_ref)
        since = project.enabled_at.get(service)
        if service not in project.services or (
            since is not None and time.monotonic() - since < self.propagation_s
        ):
            raise service_disabled(service, project.number)
        return project

    def project(self, ref: str) -> Project:
        """`ref` is `projects/ID`, `projects/NUMBER`, or a bare id, as the APIs accept."""
        key = ref.removeprefix("projects/")
        for project in self.projects.values():
            if key in (project.project_id, project.number):
                return project
        raise ApiError(403, f"Permission denied on resource project {key}.", "forbidden")

    def long_running(self, name: str, response: dict[str, Any]) -> dict[str, Any]:
        """An `operations/...` resource that is done at its second read."""
        self.operations[name] = {"name": name, "done": False, "_response": response, "_reads": 0}
        return {"name": name, "done": False}


class ServiceUsage:
    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        verb = method_id.rsplit(".", 1)[1]
        if method_id == "serviceusage.operations.get":
            return _read_operation(self.state, "operations/" + params["operationsId"])
        if self.state.adc_without_quota_project:
            raise quota_project_required("serviceusage.googleapis.com")
        project = self.state.project(f"projects/{params['v1Id1']}")
        if verb == "batchGet":
            names = query.get("names", [])
            if not names or len(names) > 30:
                raise invalid("names must list between 1 and 30 services")
            return {"services": [self._service(project, n.rsplit("/", 1)[1]) for n in names]}
        if verb == "get":
            return self._service(project, params["servicesId"])
        if verb == "batchEnable":
            ids = body.get("serviceIds", [])
            if not ids or len(ids) > 20:
                raise invalid("serviceIds must list between 1 and 20 services")
            billed = [s for s in ids if s in BILLED_APIS]
            if billed and not project.billing_account:
                raise billing_not_found(project.number, billed)
            project.enabled_at.update((s, time.monotonic()) for s in ids if s not in project.services)
            project.services.update(ids)
            name = f"operations/acat.p2-{project.number}-{len(self.state.operations)}"
            return self.state.long_running(name, {"services": [self._service(project, s) for s in ids]})
        if verb in ("enable", "disable"):
            service = params["servicesId"]
            (project.services.add if verb == "enable" else project.services.discard)(service)
            name = f"operations/acf.p2-{project.number}-{len(self.state.operations)}"
            return self.state.long_running(name, {"service": self._service(project, service)})
        raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")

    @staticmethod
    def _service(project: Project, service: str) -> dict[str, Any]:
        return {
            "name": f"projects/{project.number}/services/{service}",
            "config": {"name": service, "title": service.split(".")[0]},
            "state": "ENABLED" if service in project.services else "DISABLED",
            "parent": f"projects/{project.number}",
        }


class Iam:
    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        project = self.state.require_enabled("iam.googleapis.com", params["projectsId"])
        verb = method_id.rsplit(".", 1)[1]
        if verb == "create":
            account_id = body.get("accountId", "")
            email = f"{account_id}@{project.project_id}.iam.gserviceaccount.com"
            if email in project.service_accounts:
                raise already_exists(f"projects/{project.project_id}/serviceAccounts/{email}")
            account = {
                "name": f"projects/{project.project_id}/serviceAccounts/{email}",
                "projectId": project.project_id,
                "uniqueId": f"1{len(project.service_accounts):020d}",
                "email": email,
                "displayName": body.get("serviceAccount", {}).get("displayName", ""),
                "etag": "MDEwMjE5MjA=",
                "oauth2ClientId": f"1{len(project.service_accounts):020d}",
            }
            project.service_accounts[email] = account
            project.created_at[email] = time.monotonic()
            return copy.deepcopy(account)
        email = params["serviceAccountsId"]
        if email not in project.service_accounts:
            raise not_found(f"projects/{project.project_id}/serviceAccounts/{email}")
        if verb == "get":
            return copy.deepcopy(project.service_accounts[email])
        if verb == "delete":
            del project.service_accounts[email]
            return {}
        raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")


class ResourceManager:
    """Cloud Resource Manager v1 projects (the version google.cloud's project module speaks)."""

    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        if method_id == "cloudresourcemanager.operations.get":
            return _read_operation(self.state, "operations/" + params["operationsId"])
        if method_id == "cloudresourcemanager.projects.create":
            project_id = body["projectId"]
            if project_id in self.state.projects:
                raise ApiError(409, "Requested entity already exists", "alreadyExists")
            # As on GCP: a project made through the API has no billing account.
            project = self.state.add_project(project_id, body.get("parent"), billing_account="")
            return self.state.long_running(
                f"operations/cp.{project.number}", self._project(project, body.get("name"))
            )
        if method_id == "cloudresourcemanager.projects.getIamPolicy":
            return self._policy(self._existing(params["resource"]))
        if method_id == "cloudresourcemanager.projects.setIamPolicy":
            project = self._existing(params["resource"])
            policy = body.get("policy", {})
            if policy.get("etag") != self._policy(project)["etag"]:
                raise ApiError(
                    409,
                    "There were concurrent policy changes. Please retry the whole read-modify-write "
                    "with exponential backoff.",
                    "aborted",
                )
            self._check_members(policy)
            project.policy = {k: copy.deepcopy(v) for k, v in policy.items() if k != "etag"}
            project.writes += 1
            return self._policy(project)
        if method_id == "cloudresourcemanager.projects.get":
            project = self.state.projects.get(params["projectId"])
            if project is None:
                raise ApiError(
                    403, f"The caller does not have permission (project {params['projectId']})", "forbidden"
                )
            return self._project(project)
        raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")

    def _check_members(self, policy: dict[str, Any]) -> None:
        """IAM refuses a service account it does not know, for a while also a brand-new one."""
        for binding in policy.get("bindings", []):
            for member in binding.get("members", []):
                found = _SERVICE_ACCOUNT_MEMBER.match(member)
                if found is None or found.group(2) not in self.state.projects:
                    continue
                owner = self.state.projects[found.group(2)]
                made = owner.created_at.get(found.group(1))
                if found.group(1) not in owner.service_accounts or (
                    made is not None and time.monotonic() - made < self.state.iam_propagation_s
                ):
                    raise service_account_missing(found.group(1))

    def _existing(self, project_id: str) -> Project:
        project = self.state.projects.get(project_id)
        if project is None:
            raise ApiError(403, f"The caller does not have permission (project {project_id})", "forbidden")
        return project

    @staticmethod
    def _policy(project: Project) -> dict[str, Any]:
        return {**copy.deepcopy(project.policy), "etag": f"BwY{project.writes:05d}="}

    @staticmethod
    def _project(project: Project, name: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "projectNumber": project.number,
            "projectId": project.project_id,
            "lifecycleState": "ACTIVE",
            "name": name or project.project_id,
            "createTime": "2026-11-27T12:00:00.000Z",
        }
        if project.parent:
            answer["parent"] = project.parent
        return answer


class Billing:
    """Cloud Billing v1: a project's billing account link."""

    def __init__(self, state: PlatformState) -> None:
        self.state = state

    def handle(
        self, method_id: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> dict[str, Any]:
        project = self.state.project(params["projectsId"])
        if method_id == "cloudbilling.projects.updateBillingInfo":
            account = (body or {}).get("billingAccountName", "")
            if account and account not in self.state.billing_accounts:
                raise ApiError(403, "The caller does not have permission", "forbidden")
            project.billing_account = account
        elif method_id != "cloudbilling.projects.getBillingInfo":
            raise ApiError(501, f"the fake does not implement {method_id}", "notImplemented")
        return {
            "name": f"projects/{project.project_id}/billingInfo",
            "projectId": project.project_id,
            "billingAccountName": project.billing_account,
            "billingEnabled": bool(project.billing_account),
        }


def _read_operation(state: PlatformState, name: str) -> dict[str, Any]:
    op = state.operations.get(name)
    if op is None:
        raise not_found(name)
    op["_reads"] += 1
    if op["_reads"] >= 2:
        op["done"] = True
    answer = {k: v for k, v in op.items() if not k.startswith("_")}
    if op["done"]:
        answer["response"] = op["_response"]
    return answer
