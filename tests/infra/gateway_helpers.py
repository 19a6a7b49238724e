"""Shared by the Cloud Run gateway tests: a fake GCP (with the fake Cloudflare API beside it) and
runs of tests/infra/gateway_site.yml against it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import PROJECT, ROOT, Cloud, PlayResult

sys.path.insert(0, str(ROOT / "tests" / "fakes" / "cloudflare"))

from fake_cloudflare import FakeCloudflare

CF_TOKEN = "cf-gateway-test-token-0123456789"
CF_ACCOUNT = "0123456789abcdef0123456789abcdef"
CLIENT_KEY = "client-key-never-logged-0123456789"
JWT_SECRET = "jwt-secret-never-logged-0123456789abcdef"
SERVICE = f"projects/{PROJECT}/locations/us-central1/services/llm-canary-gateway"
SECRETS = ("llm-canary-gateway-api-keys", "llm-canary-gateway-backends", "llm-canary-gateway-model-ca")


class GatewayCloud(Cloud):
    """A fake GCP project as the infra play leaves it (IAM enabled), and the fake Cloudflare API."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.fake.platform.projects[PROJECT].services.add("iam.googleapis.com")
        self.env["SSL_CERT_FILE"] = str(self.running.certificates.ca_file)
        self.cloudflare = FakeCloudflare(CF_TOKEN, CF_ACCOUNT)
        self.cloudflare_url = self.cloudflare.serve()
        self.model_ca = workdir / "tls" / "ca.crt"
        self.new_model_ca()

    def new_model_ca(self) -> str:
        """Make the VMs' CA certificate afresh where the hosts play leaves it (hosts_tls_ca_file); its PEM."""
        self.model_ca.parent.mkdir(exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=llm-canary test model CA",
                "-days",
                "1",
                "-keyout",
                str(self.model_ca.with_suffix(".key")),
                "-out",
                str(self.model_ca),
            ],
            check=True,
            capture_output=True,
        )
        return self.model_ca.read_text()

    def deploy(
        self, playbook: str = "tests/infra/gateway_site.yml", check: bool = False, **variables: Any
    ) -> PlayResult:
        base = {
            "gateway_env": {"GATEWAY_API_KEYS": CLIENT_KEY, "GATEWAY_METRICS": "true"},
            "edge_cloudflare_account_id": CF_ACCOUNT,
            "edge_cloudflare_api_token": CF_TOKEN,
            "edge_cloudflare_api_base_url": self.cloudflare_url,
            "edge_jwt_secret": JWT_SECRET,
            "edge_rate_limit_mode": "do",
            "infra_api_retries": 0,
            "gateway_health_retries": 2,
            "hosts_tls_ca_file": str(self.model_ca),
        }
        return self.play(playbook, check=check, **(base | variables))

    @property
    def state(self) -> Any:
        return self.fake.serverless

    def service(self) -> dict[str, Any]:
        return self.state.services[SERVICE]

    def revisions(self) -> list[str]:
        return sorted(k.rsplit("/", 1)[1] for k in self.state.revisions if k.startswith(SERVICE + "/"))

    def traffic(self) -> dict[str, tuple[int, str]]:
        """{revision: (percent, tag)} of what the service serves, tags joined."""
        found: dict[str, tuple[int, str]] = {}
        for status in self.service().get("trafficStatuses", []):
            percent, tags = found.get(status["revision"], (0, ""))
            tag = ",".join(t for t in (tags, status.get("tag", "")) if t)
            found[status["revision"]] = (percent + int(status.get("percent", 0)), tag)
        return found

    def secret_versions(self) -> dict[str, int]:
        return {k.rsplit("/", 1)[1]: len(v["_versions"]) for k, v in self.state.secrets.items()}

    def model_ca_versions(self) -> list[str]:
        """The PEMs the CA's secret holds, oldest first."""
        secret = next(
            v for k, v in self.state.secrets.items() if k.endswith("/secrets/llm-canary-gateway-model-ca")
        )
        return [v.decode() for v in secret["_versions"]]

    def api_writes(self) -> list[str]:
        """Mutating calls to Google's APIs (not requests to the services' own run.app URLs)."""
        return [
            f"{r.method} {r.host}{r.path}"
            for r in self.fake.mutating_requests()
            if r.host.endswith("googleapis.com")
        ]

    def worker_upstream(self) -> str:
        script = self.cloudflare.scripts["llm-canary-edge"]
        return next(b["text"] for b in script.metadata["bindings"] if b["name"] == "UPSTREAM_URL")

    def stop(self) -> None:
        self.cloudflare.close()
        super().stop()


def assert_no_secret_in(output: str) -> None:
    for secret in (CLIENT_KEY, JWT_SECRET, "vm-backend-key-never-logged"):
        assert secret not in output


def outputs(cloud: Cloud) -> dict[str, Any]:
    return json.loads((cloud.outputs_dir / f"{PROJECT}.json").read_text())
