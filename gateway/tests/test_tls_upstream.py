"""Backends behind https: the gateway's pooled client verifies, reuses and probes over TLS.

The upstreams (tests/tls_upstream.py): the fault upstream's app served over TLS, and a real
llama-server behind a real nginx terminating TLS; server certificates come from CAs made in the
test, and the gateway trusts one of them through SSL_CERT_FILE.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from tls_upstream import CertificateAuthority, NginxTLSProxy, ServerCertificate, TLSUpstream
from utils import API_KEY, HTTP_TIMEOUT, Gateway, backend, metric_value, wait_for

BACKEND_KEY = "sk-upstream-tls-7d1c9e04b2"


@dataclass(frozen=True)
class Certificates:
    """The CA the gateway trusts, and server certificates that it should and should not accept."""

    trusted_ca: Path
    valid: ServerCertificate  # trusted CA, for localhost and 127.0.0.1
    untrusted_ca: ServerCertificate  # right names, from a CA the gateway does not know
    other_host: ServerCertificate  # trusted CA, for a name that is not the backend's


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("pki")
    trusted = CertificateAuthority(directory, "trusted")
    rogue = CertificateAuthority(directory, "rogue")
    return Certificates(
        trusted_ca=trusted.cert_file,
        valid=trusted.issue("localhost", "127.0.0.1"),
        untrusted_ca=rogue.issue("localhost", "127.0.0.1"),
        other_host=trusted.issue("other.example"),
    )


@pytest.fixture
def serve_tls(certificates: Certificates) -> Iterator[Callable[..., TLSUpstream]]:
    """Start a TLS upstream (valid certificate unless told otherwise); all are stopped after the test."""
    upstreams: list[TLSUpstream] = []

    def serve(certificate: ServerCertificate | None = None, prefix: str = "") -> TLSUpstream:
        upstream = TLSUpstream(certificate or certificates.valid, prefix)
        upstreams.append(upstream)
        return upstream.start()

    yield serve
    for upstream in reversed(upstreams):
        upstream.stop()


@pytest.fixture
def start_tls_gateway(
    start_gateway: Callable[..., Gateway], certificates: Certificates
) -> Callable[..., Gateway]:
    """A gateway that trusts the test CA, the way an operator would point it at a private CA."""

    def start(backends: list[dict[str, Any]], **settings: str) -> Gateway:
        return start_gateway(backends, SSL_CERT_FILE=str(certificates.trusted_ca), **settings)

    return start


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=API_KEY, max_retries=0, timeout=HTTP_TIMEOUT)


def chat(client: openai.OpenAI) -> Any:
    """A chat completion, with the HTTP answer's headers (`.headers`) and the parsed body (`.parse()`)."""
    return client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "Say hi"}]
    )


def stream_chat(client: openai.OpenAI) -> list[Any]:
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Say hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return list(stream)


def posts(upstream: TLSUpstream) -> list[str]:
    return [r.path for r in upstream.requests if r.method == "POST"]


def test_chat_completion_through_an_https_backend(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    gateway = start_tls_gateway([backend("tls", upstream.base_url(), ["m"], kind="openai")])
    raw = chat(sdk(gateway))
    answer = raw.parse()
    assert raw.headers["x-gateway-backend"] == "tls"
    assert answer.choices[0].message.content == "hello from fake"
    assert answer.usage.total_tokens == 10
    assert posts(upstream) == ["/v1/chat/completions"]


def test_streamed_chat_completion_through_an_https_backend(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    gateway = start_tls_gateway([backend("tls", upstream.base_url(), ["m"], kind="openai")])
    chunks = stream_chat(sdk(gateway))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"t{i} " for i in range(1, 20))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20


def test_https_connection_is_kept_alive_across_requests(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    gateway = start_tls_gateway([backend("tls", upstream.base_url(), ["m"], kind="openai")])
    client = sdk(gateway)
    for _ in range(3):
        chat(client)
        stream_chat(client)
    assert len(posts(upstream)) == 6
    assert upstream.connections == 1  # one TCP connection and one TLS handshake for all six requests
    assert len({r.peer_port for r in upstream.requests}) == 1


def test_https_connection_the_backend_closed_while_idle_is_replaced(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    upstream.set("ok", close_idle_after=0.1)  # TLS close_notify, then TCP FIN, 0.1 s after each answer
    gateway = start_tls_gateway([backend("tls", upstream.base_url(), ["m"], kind="openai")])
    client = sdk(gateway)
    for _ in range(3):
        chat(client)
        time.sleep(0.3)
    assert len(posts(upstream)) == 3
    assert upstream.connections == 3
    assert metric_value(gateway.metrics(), "ai_failovers_total", backend="tls") == 0


def test_tls_handshake_names_the_backend_host(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    gateway = start_tls_gateway([backend("tls", upstream.base_url("localhost"), ["m"], kind="openai")])
    chat(sdk(gateway))
    # SNI: what a TLS terminator serving several names (a load balancer, a proxy) picks the certificate by.
    assert upstream.server_names == ["localhost"]


BAD_CERTIFICATES = [
    pytest.param("untrusted_ca", "unable to get local issuer certificate", id="untrusted_ca"),
    pytest.param("other_host", "Hostname mismatch", id="other_hostname"),
]


@pytest.mark.parametrize(("certificate", "cause"), BAD_CERTIFICATES)
def test_bad_certificate_gets_no_request_and_fails_over(
    serve_tls, start_tls_gateway, certificates, certificate, cause
):
    bad = serve_tls(getattr(certificates, certificate))
    good = serve_tls()
    gateway = start_tls_gateway(
        [
            backend("bad", bad.base_url(), ["m"], kind="openai", priority=0),
            backend("good", good.base_url(), ["m"], kind="openai", priority=1),
        ]
    )
    raw = chat(sdk(gateway))
    assert raw.headers["x-gateway-backend"] == "good"
    assert bad.connections == 1  # the gateway did connect ...
    assert bad.requests == []  # ... and sent nothing once the certificate failed verification
    assert posts(good) == ["/v1/chat/completions"]
    assert metric_value(gateway.metrics(), "ai_request_errors_total", backend="bad", reason="connect") == 1


@pytest.mark.parametrize(("certificate", "cause"), BAD_CERTIFICATES)
def test_bad_certificate_on_the_only_backend_answers_502_json(
    serve_tls, start_tls_gateway, certificates, certificate, cause
):
    bad = serve_tls(getattr(certificates, certificate))
    gateway = start_tls_gateway([backend("bad", bad.base_url(), ["m"], kind="openai")])
    response = gateway.chat()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "certificate verify failed" in error["message"] and cause in error["message"]
    assert bad.requests == []
    assert metric_value(gateway.metrics(), "ai_request_errors_total", backend="bad", reason="connect") == 1


def test_https_url_to_a_plain_http_server_is_a_connect_failure(upstream, start_tls_gateway):
    gateway = start_tls_gateway([backend("plain", upstream.url.replace("http:", "https:"), ["m"])])
    response = gateway.chat()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert upstream.received() == []
    assert metric_value(gateway.metrics(), "ai_request_errors_total", backend="plain", reason="connect") == 1


def test_stalled_tls_handshake_is_bounded_by_the_connect_timeout(serve_tls, start_tls_gateway):
    # A listening socket that never accepts: the kernel completes TCP, nobody answers the ClientHello.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        good = serve_tls()
        gateway = start_tls_gateway(
            [
                backend("silent", f"https://localhost:{silent.getsockname()[1]}", ["m"], priority=0),
                backend("good", good.base_url(), ["m"], kind="openai", priority=1),
            ],
            GATEWAY_CONNECT_TIMEOUT_S="0.5",
            GATEWAY_FIRST_BYTE_TIMEOUT_S="20",
        )
        raw = chat(sdk(gateway).with_options(timeout=5))
    assert raw.headers["x-gateway-backend"] == "good"
    assert raw.elapsed.total_seconds() < 3
    assert metric_value(gateway.metrics(), "ai_request_errors_total", backend="silent", reason="connect") == 1


def test_backend_api_key_is_sent_over_tls_and_never_logged(serve_tls, start_tls_gateway):
    upstream = serve_tls()
    gateway = start_tls_gateway(
        [backend("tls", upstream.base_url(), ["m"], kind="openai", api_key=BACKEND_KEY)],
        GATEWAY_PROBE_INTERVAL_S="0.2",
        GATEWAY_LOG_LEVEL="DEBUG",
    )
    chat(sdk(gateway))
    wait_for(lambda: any(r.method == "GET" for r in upstream.requests))  # a probe, which sends it too
    gateway.stop()
    assert {r.headers.get("authorization") for r in upstream.requests} == {f"Bearer {BACKEND_KEY}"}
    assert any(e["message"] == "request" for e in gateway.log_entries())
    assert BACKEND_KEY not in gateway.log()


def test_https_base_url_path_prefix_is_kept(serve_tls, start_tls_gateway):
    upstream = serve_tls(prefix="/prefix")
    gateway = start_tls_gateway([backend("tls", upstream.base_url(), ["m"], kind="openai")])
    raw = chat(sdk(gateway))
    assert raw.parse().choices[0].message.content == "hello from fake"
    assert posts(upstream) == ["/prefix/v1/chat/completions"]


@pytest.mark.parametrize(
    ("kind", "model", "probed", "loaded"),
    [
        pytest.param("llamacpp", "m", {"/health", "/v1/models"}, True, id="llamacpp"),
        pytest.param("ollama", "m", {"/api/ps"}, False, id="ollama"),  # the fake's /api/ps lists none
        pytest.param("openai", "fake", {"/v1/models"}, True, id="openai"),  # the fake's /v1/models lists it
    ],
)
def test_probe_over_https_reports_the_backend(serve_tls, start_tls_gateway, kind, model, probed, loaded):
    upstream = serve_tls()
    gateway = start_tls_gateway(
        [backend("tls", upstream.base_url(), [model], kind=kind)], GATEWAY_PROBE_INTERVAL_S="0.2"
    )
    # A model's state is in /health only once a probe succeeded (none is known before).
    wait_for(lambda: model in gateway.health()["backends"][0]["models"])
    state = gateway.health()["backends"][0]
    assert state["models"][model] is loaded
    assert state["up"] is True and state["last_error"] is None
    assert probed <= {r.path for r in upstream.requests}
    assert {r.method for r in upstream.requests} == {"GET"}  # probing never asks for a generation


def test_probe_over_https_with_an_untrusted_certificate_marks_the_backend_down(
    serve_tls, start_tls_gateway, certificates
):
    upstream = serve_tls(certificates.untrusted_ca)
    gateway = start_tls_gateway(
        [backend("tls", upstream.base_url(), ["m"])],
        GATEWAY_PROBE_INTERVAL_S="0.2",
        GATEWAY_BREAKER_FAILURES="1",
    )
    wait_for(lambda: gateway.health()["backends"][0]["up"] is False)
    assert "certificate verify failed" in gateway.health()["backends"][0]["last_error"]
    assert upstream.requests == []
    assert metric_value(gateway.metrics(), "ai_backend_up", backend="tls") == 0


@pytest.fixture
def nginx_tls(started, llama_tiny, certificates, log_dir) -> NginxTLSProxy:
    """A real llama-server (the tiny model) behind a real nginx terminating TLS."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is missing: run `make setup`")
    return started(NginxTLSProxy(certificates.valid, llama_tiny.port, log_dir))


def test_llama_server_behind_nginx_tls_answers_over_one_connection(nginx_tls, start_tls_gateway):
    gateway = start_tls_gateway([backend("llama-tls", nginx_tls.tls_url(), ["tiny"])])
    client = sdk(gateway)
    messages = [{"role": "user", "content": "Hi"}]
    answer = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4)
    assert answer.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    # nginx logs a request once it is finished, which may be just after the client has read it all.
    wait_for(lambda: len(nginx_tls.proxied()) >= 2)
    proxied = nginx_tls.proxied()
    assert [(r.method, r.path, r.status) for r in proxied] == [("POST", "/v1/chat/completions", 200)] * 2
    assert len({r.connection for r in proxied}) == 1


def test_probe_through_nginx_tls_sees_the_llama_server_model_loaded(nginx_tls, start_tls_gateway):
    gateway = start_tls_gateway(
        [backend("llama-tls", nginx_tls.tls_url(), ["tiny"])], GATEWAY_PROBE_INTERVAL_S="0.2"
    )
    wait_for(lambda: gateway.health()["backends"][0]["models"].get("tiny") is True)
    assert metric_value(gateway.metrics(), "ai_model_loaded", model="tiny", backend="llama-tls") == 1
    probes = nginx_tls.proxied()
    assert {"/health", "/v1/models"} <= {r.path for r in probes}
    assert all(r.method == "GET" and r.status == 200 for r in probes)
