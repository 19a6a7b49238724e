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

    def __init__(self, code: int, message: str, reason: str, domain: str = "global") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
                "status": _STATUS.get(self.code, "UNKNOWN"),
            }
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
        "then retry.",
        "accessNotConfigured",
        domain="usageLimits",
    )
