# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small Google Cloud REST client for the llm_canary.cloud gcp_* modules.

It does what google.cloud's GcpSession leaves out: retries on 429/5xx and connection errors with
backoff, retries until a deadline the errors Google documents as passing on their own (an API
enabled a moment ago answers 403 SERVICE_DISABLED until the change has propagated), errors that
name the call, method, status and Google's reason and say what to do about the ones that do not
pass, and waits on both kinds of long-running operation (Compute `operations/.../wait`, and the
`done` flag of the newer APIs).
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
# The longest wait between two tries of a call that is waiting for a change to propagate.
PROPAGATION_MAX_DELAY = 10.0
# The project of gcloud's own OAuth client: user credentials without a quota project are accounted
# to it, and APIs that need a quota project (Service Usage among them) refuse them naming it.
GCLOUD_CLIENT_PROJECT = "projects/764086051850"


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
        api_propagation_timeout=dict(type="int", default=300),
    )


class GcpApiError(Exception):
    """A failed API call: what was called, how, and what Google answered."""

    def __init__(self, method, url, status, message, reason="", info=None, hint=""):
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        self.reason = reason
        # google.rpc.ErrorInfo of the answer, when it has one: {reason, domain, metadata}.
        self.info = info or {}
        # What the user can do about it, for errors that do not pass on their own.
        self.hint = hint

    def __str__(self):
        reason = f" ({self.reason})" if self.reason else ""
        hint = f" What to do: {self.hint}" if self.hint else ""
        return f"{self.method} {self.url} failed with HTTP {self.status}{reason}: {self.message}{hint}"

    @property
    def propagating(self):
        """An API enabled a moment ago: Google says to wait a few minutes and retry."""
        return (
            self.status == 403
            and self.info.get("reason") == "SERVICE_DISABLED"
            and not _needs_quota_project(self)
        )


class GcpClient:
    """An authorised session plus retries and operation waits."""

    def __init__(self, module, retry_delay=1.0):
        if not HAS_GOOGLE:
            module.fail_json(msg=missing_required_lib("google-auth and requests"), exception=IMPORT_ERROR)
        self.module = module
        self.retries = module.params["api_retries"]
        self.retry_delay = retry_delay
        self.propagation_timeout = module.params.get("api_propagation_timeout") or 0
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
        """The decoded JSON answer; None for a 404 when `allow_missing`. Retries what is worth retrying:
        429/5xx and connection errors `api_retries` times, a change still propagating until
        `api_propagation_timeout` seconds have passed."""
        attempt = 0
        waited = 0
        deadline = None
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
                    error = _error_from(method, url, response)
                    if not error.propagating:
                        raise error
                    deadline = deadline or time.monotonic() + self.propagation_timeout
                    if time.monotonic() >= deadline:
                        error.message += f" (still so after {self.propagation_timeout}s of retries)"
                        raise error
                    time.sleep(
                        min(self.retry_delay * 2**waited, PROPAGATION_MAX_DELAY, deadline - time.monotonic())
                    )
                    waited += 1
                    continue
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
    info = next(
        (d for d in error.get("details", []) if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")), {}
    )
    found = GcpApiError(
        method,
        url,
        response.status_code,
        error.get("message", response.reason),
        ", ".join(reasons) or error.get("status", ""),
        info,
    )
    found.hint = _hint(found)
    return found


def _needs_quota_project(error):
    metadata = error.info.get("metadata") or {}
    return error.info.get("reason") == "SERVICE_DISABLED" and (
        metadata.get("consumer") == GCLOUD_CLIENT_PROJECT or "requires a quota project" in error.message
    )


def _hint(error):
    """What to do about an error that does not pass by itself (empty: nothing to add)."""
    metadata = error.info.get("metadata") or {}
    if _needs_quota_project(error):
        return (
            "your Application Default Credentials are a user's, without a quota project; run "
            "`gcloud auth application-default set-quota-project PROJECT_ID` (you need "
            "serviceusage.services.use on it), or use a service account (auth_kind=serviceaccount)."
        )
    if (
        error.info.get("reason") == "UREQ_PROJECT_BILLING_NOT_FOUND"
        or "Billing must be enabled" in error.message
    ):
        return (
            "link a billing account to the project: `gcloud billing projects link PROJECT_ID "
            "--billing-account=XXXXXX-XXXXXX-XXXXXX`, or give the play infra_billing_account."
        )
    if error.info.get("reason") == "SERVICE_DISABLED":
        service = metadata.get("service", "the API")
        return (
            f"enable {service} (`gcloud services enable {service}`); if it was enabled a moment "
            "ago, wait a few minutes and run again."
        )
    return ""
