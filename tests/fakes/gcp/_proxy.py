"""An intercepting HTTPS proxy: clients CONNECT to `*.googleapis.com` through it (HTTPS_PROXY),
it terminates TLS with the test CA's certificate and hands each request to the fake. Any other
host is refused, so a test can never reach the real cloud."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ._fake import FakeGcp
from ._tls import TestCertificates, make_certificates

INTERCEPTED_SUFFIX = ".googleapis.com"
# Cloud Run services answer on their own *.a.run.app URLs (served by the fake too).
RUN_APP_SUFFIX = ".a.run.app"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    tunnel_host = ""

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if not host.endswith((INTERCEPTED_SUFFIX, RUN_APP_SUFFIX)):
            self.send_error(403, f"the fake GCP proxy only intercepts *{INTERCEPTED_SUFFIX}")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")
        self.tunnel_host = host
        self.close_connection = False

    def _answer(self) -> None:
        if not self.tunnel_host:
            self.send_error(400, "plain-HTTP requests are not proxied; use CONNECT")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer = self.server.fake.handle(self.command, self.tunnel_host, self.path, headers, body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeGcp, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.tls = tls


class RunningFake:
    """The fake behind its proxy, on a free localhost port, until `stop()`."""

    def __init__(self, fake: FakeGcp, workdir: Path) -> None:
        self.fake = fake
        self.certificates: TestCertificates = make_certificates(
            workdir, ["*.googleapis.com", "googleapis.com", "*.a.run.app"]
        )
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.certificates.cert_file, self.certificates.key_file)
        self._server = _ProxyServer(fake, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gcp-proxy", daemon=True)
        self._thread.start()

    @property
    def proxy_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_environment(self) -> dict[str, str]:
        """What a client (ansible-playbook, requests, google-auth) needs to talk to the fake."""
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": "",
            "no_proxy": "",
            "REQUESTS_CA_BUNDLE": str(self.certificates.ca_file),
            "GCP_AUTH_KIND": "accesstoken",
            "GCP_ACCESS_TOKEN": self.fake.token,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
