"""An OpenAI-compatible upstream over TLS, with certificates from a CA made for the test.

`TLSUpstream` is fault_upstream.py's app (the same faithful fake of the llama.cpp, Ollama and
OpenAI endpoints the gateway uses) served over TLS by aiohttp, in a thread of the test process with
its own event loop, so that a test can see what reached it at each layer:

    connections   TCP connections accepted (one whose TLS handshake fails counts too)
    server_names  the names clients asked for in the TLS handshake (SNI)
    requests      HTTP requests that arrived, which needs a completed handshake

`NginxTLSProxy` is the deployed shape of "llama.cpp behind https": a real nginx terminating TLS
in front of a real llama-server, its access log naming the connection each request came over.

The CAs are made with `cryptography`, in memory and in a test's directory: no network, nothing
installed. The gateway trusts one by SSL_CERT_FILE, which `ssl.create_default_context()` honours.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import requests
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from utils import HTTP_TIMEOUT, ServerProcess, free_port

_VALIDITY = timedelta(days=1)
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files for a TLS server: its certificate, its private key, and the CA that issued it."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def _key_usage(*, signing_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signing_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing_certificates,
        crl_sign=signing_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class CertificateAuthority:
    """A root CA (EC P-256, valid for a day) that issues server certificates into `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self._directory = directory
        self._name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"llm-canary test CA {name}")])
        now = datetime.now(UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signing_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{name}-ca.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, *hosts: str) -> ServerCertificate:
        """A server certificate for these host names and IP addresses (its subjectAltName)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        issuer_key_id = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signing_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = f"{self._name}-{'-'.join(hosts)}"
        pair = ServerCertificate(
            self._directory / f"{stem}.crt", self._directory / f"{stem}.key", self.cert_file
        )
        pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pair


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    peer_port: int  # tells apart the TCP connections requests came over


class TLSUpstream:
    """fault_upstream's app on 127.0.0.1 over TLS, optionally under a path prefix (`/prefix/v1/...`)."""

    def __init__(self, certificate: ServerCertificate, prefix: str = "") -> None:
        self._certificate = certificate
        self._prefix = prefix
        self.port = 0
        self.connections = 0
        self.server_names: list[str | None] = []
        self.requests: list[ReceivedRequest] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-upstream", daemon=True)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    def base_url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{self._prefix}"

    def set(self, mode: str = "ok", **params: Any) -> None:
        """Steer the fault upstream (see fault_upstream.py), over https to localhost; forget what it saw."""
        requests.post(
            self.base_url() + "/_control",
            json={"mode": mode, **params},
            verify=self._certificate.ca_file,
            timeout=HTTP_TIMEOUT,
        ).raise_for_status()
        self.requests.clear()
        self.connections = 0

    def start(self) -> TLSUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(_START_TIMEOUT)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(_START_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_START_TIMEOUT)
        self._loop.close()

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._certificate.cert_file, self._certificate.key_file)

        def record_server_name(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
            self.server_names.append(name)

        context.sni_callback = record_server_name  # type: ignore[assignment]
        return context

    def _app(self) -> web.Application:
        # Imported here: fault_upstream is a script in this directory, found on pytest's sys.path.
        from fault_upstream import make_app

        if not self._prefix:
            app = make_app()
            app.middlewares.append(self._record)
            return app
        root = web.Application(middlewares=[self._record])
        root.add_subapp(self._prefix, make_app())
        return root

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        assert request.transport is not None
        self.requests.append(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                peer_port=request.transport.get_extra_info("peername")[1],
            )
        )
        return await handler(request)

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        handler_factory = self._runner.server
        assert handler_factory is not None

        def accept() -> asyncio.Protocol:
            # Called once per accepted TCP connection, before the TLS handshake.
            self.connections += 1
            return handler_factory()

        self._server = await self._loop.create_server(accept, "127.0.0.1", 0, ssl=self._tls_context())
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None and self._runner is not None
        self._server.close()
        await self._runner.cleanup()


class ProxiedRequest(NamedTuple):
    """One line of NginxTLSProxy's access log."""

    connection: int  # nginx's serial number of the client connection
    method: str
    path: str
    status: int


class NginxTLSProxy(ServerProcess):
    """nginx terminating TLS on `tls_port` and proxying to a plain-HTTP server on 127.0.0.1:`target_port`.

    It also listens without TLS on `port`, only so that ServerProcess.start can see it is ready.
    """

    def __init__(self, certificate: ServerCertificate, target_port: int, workdir: Path) -> None:
        port = free_port()
        self.tls_port = free_port()
        name = f"nginx-tls-{self.tls_port}"
        self.access_log = workdir / f"{name}-access.log"
        conf = workdir / f"{name}.conf"
        conf.write_text(
            f"""
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 64; }}
http {{
  log_format requests '$connection $https $request_method $uri $status';
  access_log {self.access_log} requests;
  client_body_temp_path {workdir}/{name}-body;
  proxy_temp_path {workdir}/{name}-proxy;
  server {{
    listen 127.0.0.1:{self.tls_port} ssl;
    listen 127.0.0.1:{port};
    ssl_certificate {certificate.cert_file};
    ssl_certificate_key {certificate.key_file};
    location / {{
      proxy_pass http://127.0.0.1:{target_port};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
        )
        super().__init__(["nginx", "-c", str(conf), "-g", "daemon off;"], port)

    def tls_url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.tls_port}"

    def proxied(self) -> list[ProxiedRequest]:
        """The requests that came over TLS (not start()'s readiness checks), in order."""
        entries = []
        for line in self.access_log.read_text().splitlines():
            connection, https, method, path, status = line.split(" ")
            if https == "on":
                entries.append(ProxiedRequest(int(connection), method, path, int(status)))
        return entries
