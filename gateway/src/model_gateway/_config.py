"""Settings, parsed once at start-up from the environment (and optionally a YAML file).

Every setting is read here and nowhere else. A bad value raises `ConfigError` naming the key and
the value, so the process refuses to start instead of serving with a half-understood config.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

BackendKind = Literal["llamacpp", "ollama", "openai"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("llamacpp", "ollama", "openai")
# Model names travel in URLs, logs and metric labels: keep them printable and bounded.
MODEL_NAME_MAX = 256
_TRUE = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


class ConfigError(ValueError):
    """A setting is missing or has a value the gateway cannot use; the message names both."""


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """One upstream server and the models it serves."""

    name: str
    url: str
    kind: BackendKind
    models: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)
    weight: int = 1
    priority: int = 0
    max_concurrency: int = 64


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `first_byte` runs from sending the request to the first body byte from upstream."""

    connect: float = 3.0
    first_byte: float = 120.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway needs, validated."""

    backends: tuple[BackendConfig, ...]
    api_keys: frozenset[str] = field(repr=False)
    allow_unauthenticated: bool = False
    allowed_models: frozenset[str] | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    metrics: bool = True
    host: str = "0.0.0.0"
    port: int = 8080
    timeouts: Timeouts = Timeouts()
    max_attempts: int = 3
    max_body_bytes: int = 4 * 1024 * 1024
    # The limits a deployer can rely on (README, "Limits"): a client's request head, in bytes and
    # header lines; requests read ahead of the one being answered on a connection (pipelining).
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    max_pipelined: int = 1
    # A non-streamed answer up to this size is buffered and sent whole; a larger one (or one of
    # unknown length beyond it) is streamed through with flow control.
    max_buffered_answer_bytes: int = 1024 * 1024
    # The longest Retry-After from a backend that the gateway honours (and passes on).
    retry_after_max: float = 120.0
    # Per backend: requests that may wait for one of its `max_concurrency` slots, and how long.
    max_pending: int = 1024
    pending_timeout: float = 30.0
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    probe_interval: float = 15.0
    # Longer than the idle timeout of the proxies in front (Google's front ends keep idle
    # connections to backends for 600 s): whoever closes an idle connection first should be the
    # proxy, or a request it sends at that moment fails.
    client_keep_alive: float = 620.0
    access_log: bool = True
    log_level: str = "INFO"
    gcp_project: str | None = None


def _bool(key: str, raw: str) -> bool:
    try:
        return _TRUE[raw.strip().lower()]
    except KeyError:
        raise ConfigError(f"{key}={raw!r}: expected true or false") from None


def _number(key: str, raw: Any, cast: type[int] | type[float], minimum: float) -> Any:
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={raw!r}: expected a {cast.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={raw!r}: expected a finite number")
    if value < minimum:
        raise ConfigError(f"{key}={raw!r}: must be at least {minimum}")
    return value


def _csv(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _check_model_name(key: str, name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MODEL_NAME_MAX or not name.isprintable():
        raise ConfigError(
            f"{key}: model name {name!r} must be a printable string of 1-{MODEL_NAME_MAX} chars"
        )
    return name


_BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _backend(index: int, raw: Any) -> BackendConfig:
    key = f"GATEWAY_BACKENDS[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected an object, got {raw!r}")
    unknown = set(raw) - {"name", "url", "kind", "models", "api_key", "weight", "priority", "max_concurrency"}
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _BACKEND_NAME.match(name):
        raise ConfigError(f"{key}.name={name!r}: expected letters, digits, '_', '.', '-' (1-63 chars)")
    url = raw.get("url")
    if isinstance(url, str) and "@" in urlsplit(url).netloc:
        # Not echoed: the URL holds a secret. The gateway sends `api_key` as a bearer token instead.
        raise ConfigError(f"{key}.url: credentials in the URL are not supported; use the backend's api_key")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", url):
        raise ConfigError(f"{key}.url={url!r}: expected an http(s) base URL (no query or fragment)")
    url = url.rstrip("/")
    if url.endswith("/v1"):
        raise ConfigError(f"{key}.url={url!r}: give the server's base URL without /v1")
    kind = raw.get("kind")
    if kind not in BACKEND_KINDS:
        raise ConfigError(f"{key}.kind={kind!r}: expected one of {', '.join(BACKEND_KINDS)}")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{key}.models={models!r}: expected a non-empty list of model names")
    api_key = raw.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or not api_key or not api_key.isprintable()):
        raise ConfigError(f"{key}.api_key: expected a non-empty string of printable characters")
    return BackendConfig(
        name=name,
        url=url,
        kind=kind,
        models=tuple(_check_model_name(f"{key}.models", m) for m in models),
        api_key=api_key,
        weight=_number(f"{key}.weight", raw.get("weight", 1), int, 1),
        priority=_number(f"{key}.priority", raw.get("priority", 0), int, -(2**31)),
        max_concurrency=_number(f"{key}.max_concurrency", raw.get("max_concurrency", 64), int, 1),
    )


def _json_setting(key: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw  # already structured (from the YAML file)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: not valid JSON ({exc.msg} at position {exc.pos})") from None


def _merged_source(environ: Mapping[str, str]) -> dict[str, Any]:
    """The YAML file named by GATEWAY_CONFIG (keys as the variable names), overlaid by the environment."""
    source: dict[str, Any] = {}
    path = environ.get("GATEWAY_CONFIG")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"GATEWAY_CONFIG={path!r}: cannot read it ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"GATEWAY_CONFIG={path!r}: expected a mapping of setting names to values")
        source.update({str(k): v for k, v in loaded.items()})
    source.update(environ)
    return source


def _text(value: Any) -> str:
    """A YAML scalar or list as the string the environment would carry."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise ConfigError naming the first bad one."""
    src = _merged_source(os.environ if environ is None else environ)

    def get(key: str, default: str) -> str:
        value = src.get(key)
        return default if value is None or value == "" else _text(value)

    raw_backends = _json_setting("GATEWAY_BACKENDS", src.get("GATEWAY_BACKENDS") or "[]")
    if not isinstance(raw_backends, list) or not raw_backends:
        raise ConfigError("GATEWAY_BACKENDS: expected a non-empty JSON list of backends")
    backends = tuple(_backend(i, raw) for i, raw in enumerate(raw_backends))
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ConfigError(f"GATEWAY_BACKENDS: backend names must be unique, got {names}")

    api_keys = frozenset(_csv(get("GATEWAY_API_KEYS", "")))
    allow_unauthenticated = _bool(
        "GATEWAY_ALLOW_UNAUTHENTICATED", get("GATEWAY_ALLOW_UNAUTHENTICATED", "false")
    )
    if not api_keys and not allow_unauthenticated:
        raise ConfigError(
            "GATEWAY_API_KEYS is empty: set client keys,"
            " or GATEWAY_ALLOW_UNAUTHENTICATED=true to serve without any"
        )

    allowed_raw = _csv(get("GATEWAY_ALLOWED_MODELS", ""))
    allowed = frozenset(_check_model_name("GATEWAY_ALLOWED_MODELS", m) for m in allowed_raw) or None

    aliases_raw = _json_setting("GATEWAY_MODEL_ALIASES", src.get("GATEWAY_MODEL_ALIASES") or "{}")
    if not isinstance(aliases_raw, dict):
        raise ConfigError(f"GATEWAY_MODEL_ALIASES={aliases_raw!r}: expected a JSON object alias -> model")
    served = {m for b in backends for m in b.models}
    aliases: dict[str, str] = {}
    for alias, target in aliases_raw.items():
        _check_model_name("GATEWAY_MODEL_ALIASES", alias)
        if target not in served:
            raise ConfigError(f"GATEWAY_MODEL_ALIASES[{alias!r}]={target!r}: no backend lists that model")
        aliases[alias] = target

    timeouts = Timeouts(
        connect=_number("GATEWAY_CONNECT_TIMEOUT_S", get("GATEWAY_CONNECT_TIMEOUT_S", "3"), float, 0.001),
        first_byte=_number(
            "GATEWAY_FIRST_BYTE_TIMEOUT_S", get("GATEWAY_FIRST_BYTE_TIMEOUT_S", "120"), float, 0.001
        ),
        idle=_number("GATEWAY_IDLE_TIMEOUT_S", get("GATEWAY_IDLE_TIMEOUT_S", "60"), float, 0.001),
        total=_number("GATEWAY_TOTAL_TIMEOUT_S", get("GATEWAY_TOTAL_TIMEOUT_S", "600"), float, 0.001),
    )
    log_level = get("GATEWAY_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"GATEWAY_LOG_LEVEL={log_level!r}: expected DEBUG, INFO, WARNING or ERROR")
    return Settings(
        backends=backends,
        api_keys=api_keys,
        allow_unauthenticated=allow_unauthenticated,
        allowed_models=allowed,
        aliases=aliases,
        metrics=_bool("GATEWAY_METRICS", get("GATEWAY_METRICS", "true")),
        host=get("GATEWAY_HOST", "0.0.0.0"),
        port=_number("PORT", get("PORT", "8080"), int, 0),
        timeouts=timeouts,
        max_attempts=_number("GATEWAY_MAX_ATTEMPTS", get("GATEWAY_MAX_ATTEMPTS", "3"), int, 1),
        max_body_bytes=_number(
            "GATEWAY_MAX_BODY_BYTES", get("GATEWAY_MAX_BODY_BYTES", str(4 * 1024 * 1024)), int, 1
        ),
        max_head_bytes=_number(
            "GATEWAY_MAX_HEAD_BYTES", get("GATEWAY_MAX_HEAD_BYTES", str(64 * 1024)), int, 1024
        ),
        max_headers=_number("GATEWAY_MAX_HEADERS", get("GATEWAY_MAX_HEADERS", "100"), int, 8),
        max_pipelined=_number("GATEWAY_MAX_PIPELINED", get("GATEWAY_MAX_PIPELINED", "1"), int, 0),
        max_buffered_answer_bytes=_number(
            "GATEWAY_MAX_BUFFERED_ANSWER_BYTES",
            get("GATEWAY_MAX_BUFFERED_ANSWER_BYTES", str(1024 * 1024)),
            int,
            0,
        ),
        retry_after_max=_number(
            "GATEWAY_RETRY_AFTER_MAX_S", get("GATEWAY_RETRY_AFTER_MAX_S", "120"), float, 1
        ),
        max_pending=_number("GATEWAY_MAX_PENDING", get("GATEWAY_MAX_PENDING", "1024"), int, 0),
        pending_timeout=_number(
            "GATEWAY_PENDING_TIMEOUT_S", get("GATEWAY_PENDING_TIMEOUT_S", "30"), float, 0
        ),
        breaker_failures=_number("GATEWAY_BREAKER_FAILURES", get("GATEWAY_BREAKER_FAILURES", "3"), int, 1),
        breaker_cooldown=_number(
            "GATEWAY_BREAKER_COOLDOWN_S", get("GATEWAY_BREAKER_COOLDOWN_S", "30"), float, 0
        ),
        probe_interval=_number("GATEWAY_PROBE_INTERVAL_S", get("GATEWAY_PROBE_INTERVAL_S", "15"), float, 0),
        client_keep_alive=_number(
            "GATEWAY_CLIENT_KEEP_ALIVE_S", get("GATEWAY_CLIENT_KEEP_ALIVE_S", "620"), float, 1
        ),
        access_log=_bool("GATEWAY_ACCESS_LOG", get("GATEWAY_ACCESS_LOG", "true")),
        log_level=log_level,
        gcp_project=get("GOOGLE_CLOUD_PROJECT", "") or None,
    )
