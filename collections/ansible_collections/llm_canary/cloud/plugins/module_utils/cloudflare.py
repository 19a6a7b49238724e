# Copyright: llm-canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small Cloudflare v4 API client for the llm_canary.cloud cloudflare_* modules.

It unwraps Cloudflare's envelope (`{"success", "errors", "messages", "result"}`), retries 429
(honouring `Retry-After`), 5xx and connection errors with backoff, and raises errors that name
the call, the method, the HTTP status and Cloudflare's error codes, with the likely cause for
401/403/429 in words. The API token goes into the Authorization header only, never into an error.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import Request

DEFAULT_API_BASE_URL = "https://api.cloudflare.com/client/v4"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
STATUS_HINTS = {
    401: "the API token is missing, malformed or revoked",
    403: "the API token lacks a permission this call needs (Workers Scripts: Edit, Workers Routes: Edit)",
    429: "Cloudflare's API rate limit; retried until api_retries ran out",
}


def cloudflare_argument_spec():
    """Connection options shared by every cloudflare_* module."""
    return dict(
        api_token=dict(
            type="str", no_log=True, required=True, fallback=(env_fallback, ["CLOUDFLARE_API_TOKEN"])
        ),
        api_base_url=dict(
            type="str", default=DEFAULT_API_BASE_URL, fallback=(env_fallback, ["CLOUDFLARE_API_BASE_URL"])
        ),
        api_retries=dict(type="int", default=4),
        api_timeout=dict(type="int", default=60),
    )


class CloudflareApiError(Exception):
    """A failed API call: what was called, how, and what Cloudflare answered."""

    def __init__(self, method, path, status, errors):
        self.method = method
        self.path = path
        self.status = status
        self.errors = errors
        super().__init__(str(self))

    @property
    def codes(self):
        return [error.get("code") for error in self.errors]

    def __str__(self):
        detail = (
            "; ".join(f"{e.get('message', '')} (code {e.get('code')})" for e in self.errors) or "no details"
        )
        hint = f" - {STATUS_HINTS[self.status]}" if self.status in STATUS_HINTS else ""
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"Cloudflare API {self.method} {self.path} failed with {status}{hint}: {detail}"


def encode_multipart(parts):
    """multipart/form-data, byte-exact (the module source must arrive unchanged).

    `parts` is a list of (name, filename or None, content type, bytes). Returns (content type, body).
    """
    boundary = f"llm-canary-{uuid.uuid4().hex}"
    chunks = []
    for name, filename, content_type, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
        chunks.append(head.encode())
        chunks.append(content)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def path_of(*segments):
    """An API path from segments, each percent-encoded (names come from users)."""
    return "/" + "/".join(quote(str(segment), safe="") for segment in segments)


class CloudflareClient:
    """Requests with the token, the envelope unwrapped, and retries."""

    def __init__(self, params, retry_delay=1.0, sleep=None):
        self.base_url = params["api_base_url"].rstrip("/")
        self.retries = params["api_retries"]
        self.retry_delay = retry_delay
        self.sleep = sleep or time.sleep
        self.http = Request(
            headers={"Authorization": f"Bearer {params['api_token']}", "User-Agent": "llm-canary-ansible"},
            timeout=params["api_timeout"],
            # One TLS context for all calls: Request would otherwise load the CA store per call.
            context=ssl.create_default_context(),
        )

    def call(self, method, path, json_body=None, body=None, content_type=None, query=None, raw=False):
        """The `result` of the call (or the raw body with `raw`); raises CloudflareApiError."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        headers = {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        attempt = 0
        while True:
            try:
                response = self.http.open(method, url, data=body, headers=headers)
                payload = response.read()
                return payload if raw else self._result(method, path, response.status, payload)
            except HTTPError as err:
                status, payload, retry_after = err.code, err.read(), err.headers.get("Retry-After")
            except (URLError, OSError) as err:
                status, payload, retry_after = (
                    0,
                    json.dumps({"errors": [{"message": str(err)}]}).encode(),
                    None,
                )
            if (status in RETRY_STATUSES or status == 0) and attempt < self.retries:
                self.sleep(self._delay(attempt, retry_after))
                attempt += 1
                continue
            raise CloudflareApiError(method, path, status, self._errors(payload))

    def _delay(self, attempt, retry_after):
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                pass
        return self.retry_delay * 2**attempt

    def _result(self, method, path, status, payload):
        try:
            envelope = json.loads(payload or b"{}")
        except ValueError as err:
            raise CloudflareApiError(
                method, path, status, [{"message": f"answer is not JSON: {err}"}]
            ) from err
        if isinstance(envelope, dict) and envelope.get("success") is False:
            raise CloudflareApiError(method, path, status, self._errors(payload))
        return envelope.get("result") if isinstance(envelope, dict) else envelope

    @staticmethod
    def _errors(payload):
        try:
            errors = json.loads(payload).get("errors")
        except (ValueError, AttributeError):
            errors = None
        if not isinstance(errors, list) or not errors:
            text = payload[:200].decode("utf-8", "replace") if payload else ""
            return [{"message": text or "empty answer"}]
        return [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
