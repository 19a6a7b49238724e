"""Errors the gateway answers with, all in OpenAI's shape.

    GatewayError                  an HTTP answer: status, message, type, code, param, headers
    ├── BadRequest                400  malformed request (never reaches a backend)
    ├── Unauthorized              401  missing or wrong key
    ├── ModelNotAllowed           403  model outside GATEWAY_ALLOWED_MODELS
    ├── NotFound                  404  unknown model or path
    ├── RateLimited               429  every backend is busy or asked to wait (carries Retry-After)
    ├── UpstreamFailed            502/503/504 every backend failed before the first byte
    └── PassThrough               an upstream answer (429) handed on as it came

Raised inside the request path and turned into a response at one place (`error_response`). The
HTTP server's own answers (400 unparseable, 408, 413 over GATEWAY_MAX_BODY_BYTES, 431) take their
body from `error_body`, in the same shape.
"""

from __future__ import annotations

import json

from ._http import Response


class GatewayError(Exception):
    """An answer to the client in OpenAI's error shape."""

    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


class BadRequest(GatewayError):
    """400: the request is malformed; it never reaches a backend."""

    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    """401: no key, or a key the gateway does not know."""

    status = 401
    type = "authentication_error"


class ModelNotAllowed(GatewayError):
    """403: the model exists but is outside the allowlist."""

    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    """404: no backend serves the model, or no such path."""

    status = 404
    type = "not_found_error"


class RateLimited(GatewayError):
    """429: every backend is at its concurrency limit or asked to wait; Retry-After says how long."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int, code: str = "rate_limited") -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


class UpstreamFailed(GatewayError):
    """502 (bad answer or refused), 503 (none available), 504 (timed out): no byte was sent yet."""

    type = "server_error"


class PassThrough(GatewayError):
    """An upstream answer (a 429 with Retry-After) handed to the client unchanged."""

    def __init__(self, response: Response) -> None:
        super().__init__("upstream answer passed through", status=response.status)
        self.response = response


def error_body(status: int, message: str, code: str) -> bytes:
    """The body of the HTTP server's own answers (unparseable requests, limits), in OpenAI's shape."""
    error_class = BadRequest if status < 500 else GatewayError
    return error_class(message, code=code, status=status).body()


def error_response(error: GatewayError) -> Response:
    return Response(error.status, error.body(), {**error.headers, "Content-Type": "application/json"})
