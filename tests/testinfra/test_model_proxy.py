"""Model proxy host checks (role model_proxy): TLS, the bearer key, streaming, errors as JSON.

Every proxy on the host is checked: each /etc/nginx/conf.d/llm-canary-<name>.conf, its listen
address and port, and its key (read as root from the host, as the role wrote it). Hosts without
one skip. The certificate is verified against MODEL_PROXY_CA_FILE (a path on the host) when it is
set, else against the host's trust store.

Checks that need a model server which streams on cue, or that stop it (upstream down), run only
against Molecule's stand-in (llm-canary-stub@PORT), never against a real model server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

import pytest

CONF_GLOB = "/etc/nginx/conf.d/llm-canary-*.conf"
SECRETS_DIR = "/etc/nginx/llm-canary"
STUB_UNIT = "llm-canary-stub@{port}"

# One request from the host with its own Python: https (certificate verified against `cafile`,
# or the trust store) or plain http. Prints the status, headers and the body as it arrived:
# [seconds since the request was sent, text] per read.
_REQUEST = """
import http.client, json, ssl, sys, time
scheme, host, port, method, path, headers, body, cafile = json.loads(sys.argv[1])
if scheme == "https":
    context = ssl.create_default_context(cafile=cafile)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
else:
    connection = http.client.HTTPConnection(host, port, timeout=30)
start = time.monotonic()
connection.request(method, path, body=body, headers=headers)
response = connection.getresponse()
chunks = []
while data := response.read1(65536):
    chunks.append([time.monotonic() - start, data.decode()])
print(json.dumps({"status": response.status, "headers": dict(response.getheaders()), "chunks": chunks}))
"""


@dataclass(frozen=True)
class Proxy:
    name: str
    address: str
    port: int
    upstream: str
    api_key: str

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    chunks: list[tuple[float, str]]

    @property
    def body(self) -> str:
        return "".join(text for _, text in self.chunks)

    def json(self) -> Any:
        return json.loads(self.body)


def _read_proxy(host: Any, conf_path: str) -> Proxy:
    name = re.fullmatch(r".*/llm-canary-(.+)\.conf", conf_path).group(1)
    conf = host.file(conf_path).content_string
    address, port = re.search(r"^\s*listen (\S+):(\d+) ssl;", conf, re.M).groups()
    upstream = re.search(r"^\s*server (\S+:\d+);", conf, re.M).group(1)
    with host.sudo():
        key_map = host.file(f"{SECRETS_DIR}/{name}.api-key.map").content_string
    # The role writes the key as a regular expression: `"~^Bearer <escaped key>$" 1;`.
    escaped = re.search(r'^"~\^Bearer (.*)\$" 1;$', key_map, re.M).group(1)
    return Proxy(name, address.strip("[]"), int(port), upstream, re.sub(r"\\(.)", r"\1", escaped))


@pytest.fixture
def proxies(host: Any) -> list[Proxy]:
    paths = host.check_output(f"ls {CONF_GLOB} 2>/dev/null || true").split()
    if not paths:
        pytest.skip("no model proxy on this host")
    return [_read_proxy(host, path) for path in paths]


@pytest.fixture
def ca_file() -> str | None:
    return os.environ.get("MODEL_PROXY_CA_FILE") or None


@pytest.fixture
def curl_ca(ca_file: str | None) -> str:
    """curl's option for the CA to verify the proxy with (none: the trust store)."""
    return f"--cacert {shlex.quote(ca_file)}" if ca_file else ""


@pytest.fixture
def request_(host: Any, ca_file: str | None):
    """request_(proxy, path, ...): one request to the proxy from the host."""

    def send(
        proxy: Proxy,
        path: str,
        *,
        method: str = "GET",
        key: str | None = None,
        authorization: str | None = None,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        scheme: str = "https",
    ) -> Answer:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        if authorization is not None:
            all_headers["Authorization"] = authorization
        spec = json.dumps([scheme, proxy.address, proxy.port, method, path, all_headers, body, ca_file])
        result = host.run(f"python3 -c {shlex.quote(_REQUEST)} {shlex.quote(spec)}")
        target = f"{scheme}://{proxy.address}:{proxy.port}{path}"
        assert result.rc == 0, f"{method} {target} failed: {result.stderr}"
        data = json.loads(result.stdout)
        return Answer(data["status"], data["headers"], [tuple(chunk) for chunk in data["chunks"]])

    return send


@pytest.fixture
def stub(host: Any):
    """stub(proxy): skips unless the proxy's upstream is Molecule's stand-in model server."""

    def require(proxy: Proxy) -> str:
        unit = STUB_UNIT.format(port=proxy.upstream.rsplit(":", 1)[1])
        if not host.service(unit).is_running:
            pytest.skip(f"{proxy.name}: the upstream is not the stand-in model server ({unit})")
        return unit

    return require


def assert_openai_error(answer: Answer, status: int, code: str, error_type: str) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == (code, error_type)
    assert error["message"]


def test_request_without_a_key_gets_a_json_401(proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/")):
            answer = request_(proxy, path, method=method, body="{}" if method == "POST" else None)
            assert_openai_error(answer, 401, "invalid_api_key", "invalid_request_error")
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_anything_but_the_exact_key_gets_a_401(proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        wrong = [
            f"Bearer {proxy.api_key.swapcase()}",
            f"Bearer {proxy.api_key}x",
            f"Bearer x{proxy.api_key}",
            f"Bearer {proxy.api_key[:-1]}",
            f"Basic {proxy.api_key}",
            proxy.api_key,
            "Bearer ",
        ]
        for authorization in wrong:
            answer = request_(proxy, "/v1/models", authorization=authorization)
            assert_openai_error(answer, 401, "invalid_api_key", "invalid_request_error")


def test_the_key_reaches_the_model_server(proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        answer = request_(proxy, "/v1/models", key=proxy.api_key)
        assert answer.status == 200, answer.body
        assert answer.json()["data"]


def test_certificate_verifies_for_the_address_with_curl(
    host: Any, proxies: list[Proxy], curl_ca: str
) -> None:
    for proxy in proxies:
        auth = shlex.quote(f"Authorization: Bearer {proxy.api_key}")
        out = host.check_output(
            f"curl -sS {curl_ca} -o /dev/null -w '%{{http_code}}' -H {auth} {proxy.url}/v1/models"
        )
        assert out == "200"


def test_certificate_verifies_for_the_host_name_with_curl(
    host: Any, proxies: list[Proxy], curl_ca: str
) -> None:
    name = host.check_output("hostname")
    for proxy in proxies:
        result = host.run(
            f"curl -sS {curl_ca} -o /dev/null -w '%{{http_code}}' "
            f"--resolve {name}:{proxy.port}:{proxy.address} https://{name}:{proxy.port}/v1/models"
        )
        assert (result.rc, result.stdout) == (0, "401"), result.stderr


def test_certificate_is_refused_without_its_ca(host: Any, proxies: list[Proxy], ca_file: str | None) -> None:
    if ca_file is None:
        pytest.skip("the certificate comes from a CA in the trust store")
    for proxy in proxies:
        result = host.run(f"curl -sS -o /dev/null {proxy.url}/v1/models")
        assert result.rc == 60, result.stderr  # curl: peer certificate cannot be authenticated


def test_plain_http_to_the_tls_port_gets_a_json_400(proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        answer = request_(proxy, "/v1/models", key=proxy.api_key, scheme="http")
        assert_openai_error(answer, 400, "tls_required", "invalid_request_error")


def test_body_over_the_limit_gets_a_json_413(proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        # The declared length is enough: nginx refuses it before reading the body.
        too_long = {"Content-Length": str(2**30)}
        answer = request_(proxy, "/v1/chat/completions", method="POST", key=proxy.api_key, headers=too_long)
        assert_openai_error(answer, 413, "request_too_large", "invalid_request_error")


def test_secrets_are_readable_by_root_only(host: Any, proxies: list[Proxy]) -> None:
    with host.sudo():
        assert host.file(SECRETS_DIR).mode == 0o700
        for proxy in proxies:
            for path in (f"{SECRETS_DIR}/{proxy.name}.pem", f"{SECRETS_DIR}/{proxy.name}.api-key.map"):
                secret = host.file(path)
                assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600), path


def test_key_is_not_in_the_world_readable_config(host: Any, proxies: list[Proxy]) -> None:
    for proxy in proxies:
        conf = host.file(f"/etc/nginx/conf.d/llm-canary-{proxy.name}.conf")
        assert conf.mode == 0o644
        assert proxy.api_key not in conf.content_string


def test_key_is_not_logged(host: Any, proxies: list[Proxy], request_) -> None:
    for proxy in proxies:
        request_(proxy, "/v1/models", key=proxy.api_key)
        request_(proxy, "/v1/models", key=proxy.api_key + "x")
    with host.sudo():
        for proxy in proxies:
            found = host.run(f"grep -rlF -e {shlex.quote(proxy.api_key)} /var/log/nginx")
            assert found.rc == 1, f"the key of {proxy.name} is in {found.stdout.split()}"
        access_log = host.file(f"/var/log/nginx/llm-canary-{proxies[0].name}.access.log").content_string
        assert '"GET /v1/models HTTP/1.1" 200' in access_log


def test_port_80_is_closed(listening_addresses) -> None:
    assert listening_addresses(80) == []


def test_authorization_reaches_the_model_server_unchanged(proxies: list[Proxy], request_, stub) -> None:
    for proxy in proxies:
        stub(proxy)
        answer = request_(proxy, "/echo", method="POST", key=proxy.api_key, body='{"prompt": "hi"}')
        assert answer.status == 200, answer.body
        echo = answer.json()
        assert echo["authorization"] == f"Bearer {proxy.api_key}"
        assert echo["host"] == proxy.upstream
        assert echo["body_length"] == len('{"prompt": "hi"}')


def test_streamed_answer_arrives_chunk_by_chunk(proxies: list[Proxy], request_, stub) -> None:
    for proxy in proxies:
        stub(proxy)
        answer = request_(proxy, "/stream", method="POST", key=proxy.api_key, body="{}")
        assert answer.status == 200
        lines = [json.loads(line) for line in answer.body.splitlines()]
        assert [line["index"] for line in lines] == [0, 1, 2]
        # The stand-in sends its lines a second apart: buffered, they would all arrive at the end.
        first, last = answer.chunks[0][0], answer.chunks[-1][0]
        assert last - first > 1.5, answer.chunks
        assert json.loads(answer.chunks[0][1].splitlines()[0])["index"] == 0


def test_model_server_down_gets_a_json_502(host: Any, proxies: list[Proxy], request_, stub) -> None:
    proxy = proxies[0]
    unit = stub(proxy)
    with host.sudo():
        host.check_output(f"systemctl stop {unit}")
        try:
            answer = request_(proxy, "/v1/models", key=proxy.api_key)
        finally:
            host.check_output(f"systemctl start {unit}")
    assert_openai_error(answer, 502, "upstream_error", "server_error")
    assert "<html" not in answer.body
