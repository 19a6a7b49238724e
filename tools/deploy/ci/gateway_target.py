"""The canary's view of a Cloud Run gateway revision (GCP): its URL and a client key, from the
environment the canary play sets, shaped like stack.Stack so that slo.py measures it the same way.

    CANARY_GATEWAY_URL   the canary revision's tag URL (or the service URL), without /v1
    CANARY_GATEWAY_KEY   one of the gateway's client keys (a secret; never printed)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class GatewayTarget:
    base_url: str
    key: str

    @classmethod
    def from_env(cls) -> GatewayTarget:
        url = os.environ.get("CANARY_GATEWAY_URL", "").rstrip("/")
        key = os.environ.get("CANARY_GATEWAY_KEY", "")
        if not url or not key:
            raise SystemExit(
                "CANARY_GATEWAY_URL and CANARY_GATEWAY_KEY must be set (the canary play sets them)"
            )
        return cls(url, key)

    def url(self, key: str) -> str:
        """Every URL slo.py asks for is the gateway's: there is no Worker in front of a tag URL."""
        return self.base_url

    def token(self, sub: str, ttl_s: int = 600, **claims: object) -> str:
        return self.key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def model(self) -> str:
        answer = requests.get(f"{self.base_url}/v1/models", headers=self.headers, timeout=30)
        answer.raise_for_status()
        return answer.json()["data"][0]["id"]
