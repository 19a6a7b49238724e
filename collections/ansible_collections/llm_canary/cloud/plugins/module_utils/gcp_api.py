# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small Google Cloud REST client for the llm_canary.cloud gcp_* modules.

It does what google.cloud's GcpSession leaves out: retries on 429/5xx and connection errors with
backoff, errors that name the call, method, status and Google's reason, and waits on both kinds of
long-running operation (Compute `operations/.../wait`, and the `done` flag of the newer APIs).
"""

from __future__ import annotations

import time

from ansible.module_utils.basic import env_fallback, missing_required_lib

try:
    import google.auth
    import google.oauth2.credentials
    import google.oauth2.service_account
    import requests
    from google.auth.transport.requests import AuthorizedSession

    HAS_GOOGLE = True
    IMPORT_ERROR = None
except ImportError as err:  # pragma: no cover - reported by the module
    HAS_GOOGLE = False
    IMPORT_ERROR = err

COMPUTE = "https://compute.googleapis.com/compute/v1/"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def auth_argument_spec():
    """Authentication options shared by every gcp_* module (names as in google.cloud)."""
    return dict(
        project=dict(type="str", required=True, fallback=(env_fallback, ["GCP_PROJECT"])),
        auth_kind=dict(
            type="str",
            default="application",
            choices=["application", "accesstoken", "serviceaccount"],
            fallback=(env_fallback, ["GCP_AUTH_KIND"]),
        ),
        access_token=dict(type="str", no_log=True, fallback=(env_fallback, ["GCP_ACCESS_TOKEN"])),
        service_account_file=dict(type="path", fallback=(env_fallback, ["GCP_SERVICE_ACCOUNT_FILE"])),
        api_retries=dict(type="int", default=4),
    )


class GcpApiError(Exception):
    """A failed API call: what was called, how, and what Google answered."""

    def __init__(self, method, url, status, message, reason=""):
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        self.reason = reason

    def __str__(self):
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.method} {self.url} failed with HTTP {self.status}{reason}: {self.message}"


class GcpClient:
    """An authorised session plus retries and operation waits."""

    def __init__(self, module, retry_delay=1.0):
        if not HAS_GOOGLE:
            module.fail_json(msg=missing_required_lib("google-auth and requests"), exception=IMPORT_ERROR)
        self.module = module
        self.retries = module.params["api_retries"]
        self.retry_delay = retry_delay
        self.session = AuthorizedSession(self._credentials(module.params))

    @staticmethod
    def _credentials(params):
        kind = params["auth_kind"]
        if kind == "accesstoken":
            if not params.get("access_token"):
                raise GcpApiError(
                    "AUTH", "-", "-", "auth_kind=accesstoken needs access_token (or GCP_ACCESS_TOKEN)"
                )
            return google.oauth2.credentials.Credentials(params["access_token"])
        if kind == "serviceaccount":
            if not params.get("service_account_file"):
                raise GcpApiError("AUTH", "-", "-", "auth_kind=serviceaccount needs service_account_file")
            return google.oauth2.service_account.Credentials.from_service_account_file(
                params["service_account_file"], scopes=[CLOUD_PLATFORM_SCOPE]
            )
        credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials

    def call(self, method, url, body=None, params=None, allow_missing=False):
        """The decoded JSON answer; None for a 404 when `allow_missing`. Retries what is worth retrying."""
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, json=body, params=params, timeout=60)
            except requests.exceptions.RequestException as err:
                if attempt >= self.retries:
                    raise GcpApiError(method, url, "-", f"connection failed: {err}") from err
            else:
                if response.status_code < 300:
                    return response.json() if response.content else {}
                if response.status_code == 404 and allow_missing:
                    return None
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                    raise _error_from(method, url, response)
            time.sleep(self.retry_delay * 2**attempt)
            attempt += 1

    def wait_compute(self, operation, timeout=900):
        """Block until a Compute operation is DONE; raise its error, if it ended in one."""
        deadline = time.monotonic() + timeout
        while operation.get("status") != "DONE":
            if time.monotonic() > deadline:
                raise GcpApiError(
                    "WAIT",
                    operation["selfLink"],
                    "-",
                    "operation still {} after {}s".format(operation.get("status"), timeout),
                )
            # `wait` blocks server-side for up to two minutes, but may answer early: loop until DONE.
            operation = self.call("POST", operation["selfLink"] + "/wait")
        errors = (operation.get("error") or {}).get("errors")
        if errors:
            message = "; ".join("{}: {}".format(e.get("code"), e.get("message")) for e in errors)
            raise GcpApiError(
                operation.get("operationType", "operation").upper(),
                operation.get("targetLink", ""),
                operation.get("httpErrorStatusCode", "-"),
                message,
                errors[0].get("code", ""),
            )
        return operation

    def wait_done(self, base_url, operation, timeout=600):
        """Block until a `google.longrunning` operation (Service Usage, Resource Manager) is done,
        polling after 0.25 s, then twice as long each time, up to 5 s."""
        deadline = time.monotonic() + timeout
        poll = 0.25
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise GcpApiError("WAIT", operation["name"], "-", f"operation not done after {timeout}s")
            time.sleep(poll)
            poll = min(poll * 2, 5.0)
            operation = self.call("GET", base_url + operation["name"])
        if operation.get("error"):
            error = operation["error"]
            raise GcpApiError(
                "WAIT", operation["name"], error.get("code", "-"), error.get("message", str(error))
            )
        return operation


def _error_from(method, url, response):
    try:
        error = response.json().get("error", {})
    except ValueError:
        return GcpApiError(method, url, response.status_code, response.text[:500])
    reasons = [e.get("reason", "") for e in error.get("errors", []) if e.get("reason")]
    return GcpApiError(
        method,
        url,
        response.status_code,
        error.get("message", response.reason),
        ", ".join(reasons) or error.get("status", ""),
    )
