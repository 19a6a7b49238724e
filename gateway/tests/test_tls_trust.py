"""Two trust paths at once, as the gateway runs on Cloud Run: the model VMs' per-deploy CA in the file
SSL_CERT_FILE names (mounted from Secret Manager by playbooks/gateway.yml), and public CAs, such as
the one behind the llama.cpp Cloud Run service's Google certificate, in OpenSSL's hashed CA directory.

SSL_CERT_FILE replaces only OpenSSL's default CA *file*; its default directory (SSL_CERT_DIR, on
Debian /usr/lib/ssl/certs -> /etc/ssl/certs, filled by ca-certificates) stays in use. The directory
the gateway image has cannot be written by a test, so the second test points SSL_CERT_DIR at one it
made: the same lookup by subject hash, with a "public" CA that is nowhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tls_upstream import CertificateAuthority, TLSUpstream
from utils import Gateway, backend


@pytest.fixture
def serve_tls() -> Iterator[Callable[..., TLSUpstream]]:
    upstreams: list[TLSUpstream] = []

    def serve(ca: CertificateAuthority) -> TLSUpstream:
        upstream = TLSUpstream(ca.issue("localhost", "127.0.0.1"))
        upstreams.append(upstream)
        return upstream.start()

    yield serve
    for upstream in reversed(upstreams):
        upstream.stop()


def hashed_ca_directory(directory: Path, *cas: CertificateAuthority) -> Path:
    """An SSL_CERT_DIR-style directory: each CA also under its subject hash (`HASH.0`), as ca-certificates
    leaves /etc/ssl/certs."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to hash a CA directory")
    directory.mkdir()
    for ca in cas:
        shutil.copy(ca.cert_file, directory / ca.cert_file.name)
    subprocess.run(["openssl", "rehash", str(directory)], check=True)
    assert any(p.suffix == ".0" for p in directory.iterdir())
    return directory


def test_ssl_cert_file_keeps_the_default_ca_directory(tmp_path: Path) -> None:
    private = CertificateAuthority(tmp_path, "model-vms")
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    env["SSL_CERT_FILE"] = str(private.cert_file)
    script = "import json, ssl; print(json.dumps(ssl.get_default_verify_paths()._asdict()))"
    paths = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    assert paths["cafile"] == str(private.cert_file)  # the default CA file is replaced ...
    assert paths["capath"] == paths["openssl_capath"]  # ... the default directory is not (None if absent)
    assert any(name.endswith(".0") for name in os.listdir(paths["capath"]))  # and it holds hashed CAs


def test_gateway_trusts_the_ca_file_and_the_hashed_directory_together(
    tmp_path: Path, serve_tls: Callable[..., TLSUpstream], start_gateway: Callable[..., Gateway]
) -> None:
    model_vms = CertificateAuthority(tmp_path, "model-vms")  # SSL_CERT_FILE only
    public = CertificateAuthority(tmp_path, "public-root")  # the hashed directory only
    rogue = CertificateAuthority(tmp_path, "rogue")  # neither
    vm, service, stranger = serve_tls(model_vms), serve_tls(public), serve_tls(rogue)
    gateway = start_gateway(
        [
            backend("vm", vm.base_url(), ["vm-model"], kind="openai"),
            backend("service", service.base_url(), ["service-model"], kind="openai"),
            backend("stranger", stranger.base_url(), ["stranger-model"], kind="openai"),
        ],
        SSL_CERT_FILE=str(model_vms.cert_file),
        SSL_CERT_DIR=str(hashed_ca_directory(tmp_path / "certs", public)),
    )
    for model, name in (("vm-model", "vm"), ("service-model", "service")):
        answer = gateway.chat(model)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-backend"] == name
    refused = gateway.chat("stranger-model")
    assert refused.status_code == 502
    assert "certificate verify failed" in refused.json()["error"]["message"]
    assert stranger.requests == []
