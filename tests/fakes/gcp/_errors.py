"""Google's error JSON, as the APIs return it."""

from __future__ import annotations

from typing import Any

_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error the fake answers with, in Google's `{"error": {...}}` shape."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str,
        domain: str = "global",
        details: list[dict[str, Any]] | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        # google.rpc details (ErrorInfo, PreconditionFailure...), as the newer error format adds.
        self.details = details or []
        self.status = status or _STATUS.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def error_info(reason: str, domain: str, **metadata: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    }


def not_found(path: str) -> ApiError:
    return ApiError(404, f"The resource '{path}' was not found", "notFound")


def already_exists(path: str) -> ApiError:
    return ApiError(409, f"The resource '{path}' already exists", "alreadyExists")


def invalid(message: str, reason: str = "invalid") -> ApiError:
    return ApiError(400, message, reason)


def in_use(path: str, user: str) -> ApiError:
    return ApiError(
        400,
        f"The resource '{path}' is already being used by '{user}'",
        "resourceInUseByAnotherResource",
    )


def service_disabled(api: str, project: str) -> ApiError:
    return ApiError(
        403,
        f"{api} API has not been used in project {project} before or it is disabled. Enable it by "
        f"visiting https://console.developers.google.com/apis/api/{api}/overview?project={project} "
        "then retry. If you enabled this API recently, wait a few minutes for the action to propagate "
        "to our systems and retry.",
        "accessNotConfigured",
        domain="usageLimits",
        details=[
            error_info("SERVICE_DISABLED", "googleapis.com", service=api, consumer=f"projects/{project}")
        ],
    )


# The project of gcloud's OAuth client, which user credentials without a quota project fall back to.
GCLOUD_CLIENT_PROJECT = "764086051850"


def quota_project_required(api: str) -> ApiError:
    """What an API that needs a quota project answers a user's credentials that have none."""
    return ApiError(
        403,
        "Your application is authenticating by using local Application Default Credentials. The "
        f"{api} API requires a quota project, which is not set by default. To learn how to set your "
        "quota project, see https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds .",
        "forbidden",
        details=[
            error_info(
                "SERVICE_DISABLED",
                "googleapis.com",
                service=api,
                consumer=f"projects/{GCLOUD_CLIENT_PROJECT}",
            )
        ],
    )


def billing_not_found(project_number: str, services: list[str]) -> ApiError:
    """services:batchEnable of a billed API on a project without a billing account."""
    listed = ",".join(services)
    return ApiError(
        400,
        f"Billing account for project '{project_number}' is not found. Billing must be enabled for "
        f"activation of service(s) '{listed}' to proceed.",
        "failedPrecondition",
        status="FAILED_PRECONDITION",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [
                    {"type": "googleapis.com/billing-enabled", "subject": f"?project={project_number}"}
                ],
            },
            error_info(
                "UREQ_PROJECT_BILLING_NOT_FOUND",
                "serviceusage.googleapis.com/billing-enabled",
                project=project_number,
                services=listed,
            ),
        ],
    )


def service_account_missing(email: str) -> ApiError:
    """setIamPolicy naming a service account IAM does not know (yet: it is eventually consistent)."""
    return ApiError(400, f"Service account {email} does not exist.", "badRequest")
