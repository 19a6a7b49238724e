"""Settings: parsed once, environment over the YAML file, every bad value named in the error."""

from __future__ import annotations

import json
import socket
import time

import pytest
from model_gateway import ConfigError, load_settings
from utils import backend

BACKENDS = json.dumps(
    [{"name": "cpu", "url": "http://10.0.0.3:8080", "kind": "llamacpp", "models": ["smol"]}]
)
BASE = {"GATEWAY_BACKENDS": BACKENDS, "GATEWAY_API_KEYS": "k1, k2"}


def test_defaults_follow_the_contract():
    settings = load_settings(BASE)
    assert (settings.host, settings.port, settings.metrics) == ("0.0.0.0", 8080, True)
    assert settings.api_keys == frozenset({"k1", "k2"})
    assert settings.backends[0].priority == 0 and settings.backends[0].weight == 1
    # Idle client connections outlive the front end's 600 s, so the proxy in front closes first.
    assert settings.client_keep_alive > 600


LIMITS = {
    "GATEWAY_MAX_HEAD_BYTES": ("max_head_bytes", 64 * 1024, "8192", 8192),
    "GATEWAY_MAX_HEADERS": ("max_headers", 100, "50", 50),
    "GATEWAY_MAX_PIPELINED": ("max_pipelined", 1, "0", 0),
    "GATEWAY_MAX_BUFFERED_ANSWER_BYTES": ("max_buffered_answer_bytes", 1024 * 1024, "4096", 4096),
    "GATEWAY_RETRY_AFTER_MAX_S": ("retry_after_max", 120.0, "30", 30.0),
    "GATEWAY_MAX_PENDING": ("max_pending", 1024, "10", 10),
    "GATEWAY_PENDING_TIMEOUT_S": ("pending_timeout", 30.0, "2.5", 2.5),
}


@pytest.mark.parametrize(("key", "limit"), LIMITS.items(), ids=LIMITS.keys())
def test_limit_has_its_documented_default_and_is_set_from_the_environment(key, limit):
    field, default, raw, parsed = limit
    assert getattr(load_settings(BASE), field) == default
    assert getattr(load_settings({**BASE, key: raw}), field) == parsed


def test_yaml_file_is_read_and_the_environment_wins(tmp_path):
    config = tmp_path / "gateway.yml"
    config.write_text(
        "GATEWAY_BACKENDS:\n"
        "  - {name: gpu, url: 'http://10.0.0.4:11434', kind: ollama, models: [qwen], priority: 1}\n"
        "GATEWAY_API_KEYS: [from-file]\n"
        "PORT: 9000\n"
        "GATEWAY_METRICS: false\n"
    )
    settings = load_settings({"GATEWAY_CONFIG": str(config), "PORT": "9100"})
    assert settings.backends[0].kind == "ollama"
    assert settings.api_keys == frozenset({"from-file"})
    assert settings.port == 9100
    assert settings.metrics is False


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"GATEWAY_API_KEYS": ""}, "GATEWAY_API_KEYS"),
        ({"GATEWAY_BACKENDS": "[{"}, "GATEWAY_BACKENDS"),
        ({"GATEWAY_BACKENDS": "[]"}, "GATEWAY_BACKENDS"),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "ftp://h", "kind": "llamacpp", "models": ["m"]}]
                )
            },
            "GATEWAY_BACKENDS[0].url",
        ),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "http://h/v1", "kind": "llamacpp", "models": ["m"]}]
                )
            },
            "GATEWAY_BACKENDS[0].url",
        ),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "http://h", "kind": "vllm", "models": ["m"]}]
                )
            },
            "GATEWAY_BACKENDS[0].kind",
        ),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "http://h", "kind": "ollama", "models": []}]
                )
            },
            "GATEWAY_BACKENDS[0].models",
        ),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "http://h", "kind": "ollama", "models": ["m"], "wieght": 2}]
                )
            },
            "GATEWAY_BACKENDS[0]: unknown field",
        ),
        ({"GATEWAY_MODEL_ALIASES": '{"fast": "no-such-model"}'}, "GATEWAY_MODEL_ALIASES"),
        ({"PORT": "eighty"}, "PORT"),
        ({"GATEWAY_METRICS": "maybe"}, "GATEWAY_METRICS"),
        ({"GATEWAY_IDLE_TIMEOUT_S": "0"}, "GATEWAY_IDLE_TIMEOUT_S"),
        ({"GATEWAY_CLIENT_KEEP_ALIVE_S": "0"}, "GATEWAY_CLIENT_KEEP_ALIVE_S"),
        (
            {
                "GATEWAY_BACKENDS": json.dumps(
                    [{"name": "x", "url": "http://h:8080/v?a=1", "kind": "openai", "models": ["m"]}]
                )
            },
            "GATEWAY_BACKENDS[0].url",
        ),
        ({"GATEWAY_RETRY_AFTER_MAX_S": "inf"}, "GATEWAY_RETRY_AFTER_MAX_S"),
        ({"GATEWAY_PENDING_TIMEOUT_S": "nan"}, "GATEWAY_PENDING_TIMEOUT_S"),
        ({"GATEWAY_MAX_HEADERS": "2"}, "GATEWAY_MAX_HEADERS"),
        ({"GATEWAY_MAX_PIPELINED": "-1"}, "GATEWAY_MAX_PIPELINED"),
    ],
    ids=[
        "no-keys",
        "backends-not-json",
        "no-backends",
        "url-not-http",
        "url-with-v1",
        "unknown-kind",
        "no-models",
        "misspelt-field",
        "alias-to-unknown-model",
        "port-not-a-number",
        "bool-not-a-bool",
        "zero-timeout",
        "zero-keep-alive",
        "url-with-query",
        "retry-after-cap-inf",
        "pending-timeout-nan",
        "max-headers-too-few",
        "max-pipelined-negative",
    ],
)
def test_bad_setting_is_refused_naming_it(override, named):
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, **override})
    assert named in str(raised.value)


def test_credentials_in_a_backend_url_are_refused_without_echoing_them():
    backends = json.dumps([{"name": "x", "url": "https://user:s3cret@h", "kind": "openai", "models": ["m"]}])
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE, "GATEWAY_BACKENDS": backends})
    assert "GATEWAY_BACKENDS[0].url" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_backend_keys_never_appear_in_the_settings_repr():
    backends = json.dumps(
        [{"name": "x", "url": "http://h", "kind": "openai", "models": ["m"], "api_key": "sk-1"}]
    )
    settings = load_settings({**BASE, "GATEWAY_BACKENDS": backends})
    assert "sk-1" not in repr(settings)
    assert "k1" not in repr(settings)


def test_client_keep_alive_setting_reaches_the_server(start_gateway, upstream):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])], GATEWAY_CLIENT_KEEP_ALIVE_S="1")
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert conn.recv(1) == b""  # the gateway closed the idle connection
        assert 0.9 < time.monotonic() - started < 5  # after the setting's 1 s (the sweep runs every second)


@pytest.mark.parametrize(
    ("setting", "extra_headers"),
    [
        ({"GATEWAY_MAX_HEADERS": "10"}, "".join(f"X-{i}: v\r\n" for i in range(10))),
        ({"GATEWAY_MAX_HEAD_BYTES": "2048"}, "X-Big: " + "v" * 2100 + "\r\n"),
    ],
    ids=["max-headers", "max-head-bytes"],
)
def test_head_limit_settings_reach_the_server(start_gateway, upstream, setting, extra_headers):
    gateway = start_gateway([backend("fake", upstream.url, ["m"])], **setting)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{extra_headers}\r\n".encode())
        assert conn.recv(65536).startswith(b"HTTP/1.1 431 ")
