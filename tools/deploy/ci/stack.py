"""The deployed stack as the canary sees it: its outputs file, and tokens for its Worker.

Shared by the smoke tests (test_llamacpp_server.py, test_stack.py), the SLO verdict and the
plays (the local target prints a demo token minted here). The Worker verifies HS256 tokens
(CONTRACTS §3); this mints them with the secret the deploy made, so nothing else is needed.

    python tools/deploy/ci/stack.py token --sub demo --ttl 3600   # prints a token
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_hs256(secret: str, claims: dict[str, object], header: dict[str, object] | None = None) -> str:
    """A compact JWS (RFC 7515) over `claims`, signed with HMAC-SHA256."""
    head = {"alg": "HS256", "typ": "JWT"} if header is None else header
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (head, claims)
    )
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


@dataclass(frozen=True)
class Stack:
    """What the deploy wrote to outputs/<target>.json, with the secrets its files hold."""

    outputs: dict[str, str]
    root: Path

    @classmethod
    def load(cls, target: str | None = None, root: Path = ROOT) -> Stack:
        name = target or os.environ.get("CANARY_TARGET", "local")
        path = root / "outputs" / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: deploy first (make up, or site.yml -e target=...)")
        return cls(json.loads(path.read_text()), root)

    def url(self, key: str) -> str:
        value = self.outputs.get(key, "")
        if not value:
            raise KeyError(f"the outputs have no {key}")
        return value.rstrip("/")

    def secret(self, key: str) -> str:
        """The content of the 0600 file an output names (e.g. jwt_secret_file)."""
        return (self.root / self.outputs[key]).read_text().strip()

    @property
    def model_ca_file(self) -> str:
        """The CA certificate the model ports' TLS is verified with (model_ca_file)."""
        return str(self.root / self.outputs["model_ca_file"])

    def model_ssl_context(self) -> ssl.SSLContext:
        """Verifies a model port (TLS from the deployment's own CA) and nothing else."""
        return ssl.create_default_context(cafile=self.model_ca_file)

    @property
    def model(self) -> str:
        return self.outputs["model"]

    def token(self, sub: str, ttl_s: int = 600, **claims: object) -> str:
        now = int(time.time())
        body: dict[str, object] = {"sub": sub, "iat": now, "exp": now + ttl_s}
        body.update(claims)
        return mint_hs256(self.secret("jwt_secret_file"), body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print a token the Worker accepts")
    token.add_argument("--sub", default="demo")
    token.add_argument("--ttl", type=int, default=3600)
    token.add_argument("--target", default=None)
    args = parser.parse_args(argv)
    print(Stack.load(args.target).token(args.sub, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
