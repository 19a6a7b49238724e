"""Active health probes: cheap reads that never load a model.

    llamacpp  GET /health (200 once the model is loaded), GET /props (`is_sleeping`, slot count),
              GET /v1/models (weights size, the names it serves), GET /slots (busy slots; see below)
    ollama    GET /api/ps (loaded models with size and size_vram), GET /api/tags (models it has)
    openai    GET /v1/models (with the backend's key)

llama-server answers /health, /props and /v1/models from a cache while it sleeps
(`--sleep-idle-seconds`), but a GET /slots is a task for its queue: it wakes a sleeping server
(reloading the model) and restarts its idle timer (both measured on b11312). So /slots is read
only when /props says the server is awake, and then only when its answer can have changed: the
first time after a start, a failure or a sleep, while a slot was busy at the last read, or while
the gateway has requests in flight there. An idle server is left alone and can fall asleep.

A probe result feeds the same circuit breaker as real requests; while the breaker is open and its
cooldown is over, a successful probe is the half-open trial that closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._backends import Backend, BreakerState, ModelReport, ProbeReport, SlotReport
from ._config import MODEL_NAME_MAX
from ._upstream import Pool, UpstreamError

_USER_AGENT = "User-Agent: model-gateway-probe\r\n"
# The most names one backend may add to /v1/models and to the metrics' label sets.
MAX_LISTED = 256

log = logging.getLogger("model_gateway.probes")


class ProbeFailed(Exception):
    """The backend did not answer a probe as a healthy server would."""


async def _get_json(pool: Pool, backend: Backend, path: str) -> Any:
    headers = _USER_AGENT
    if backend.config.api_key:
        headers += f"Authorization: Bearer {backend.config.api_key}\r\n"
    response = await pool.request("GET", path, headers)
    try:
        body = await response.read()
    finally:
        response.close()
    if response.status != 200:
        raise ProbeFailed(f"GET {path} answered {response.status}")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ProbeFailed(f"GET {path} answered with a body that is not JSON") from None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _entries(listing: Any, key: str) -> list[dict[str, Any]]:
    """The objects in `listing[key]` (a list), skipping anything else."""
    return [entry for entry in _list(listing.get(key)) if isinstance(entry, dict)]


def _names(backend: Backend, candidates: Iterable[Any]) -> tuple[str, ...]:
    """The usable model names among `candidates`: printable, bounded, each once, sorted, capped."""
    names = sorted(
        {n for n in candidates if isinstance(n, str) and n and len(n) <= MODEL_NAME_MAX and n.isprintable()}
    )
    if len(names) > MAX_LISTED:
        log.warning(
            "backend lists too many models; keeping the first ones",
            extra={"backend": backend.name, "listed": len(names), "kept": MAX_LISTED},
        )
    return tuple(names[:MAX_LISTED])


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _strip_latest(name: str) -> str:
    return name.removesuffix(":latest")


def _slots_may_have_changed(backend: Backend) -> bool:
    last = backend.slots
    return last is None or not last.read or last.busy > 0 or backend.in_flight > 0


async def _llamacpp_slots(pool: Pool, backend: Backend, props: dict[str, Any]) -> SlotReport | None:
    total = _size(props.get("total_slots"))
    if props.get("is_sleeping") is True:
        # Asleep, it processes nothing; asking /slots would wake it.
        return None if total is None else SlotReport(busy=0, idle=total, read=False)
    if props.get("endpoint_slots") is False:
        return None  # started with --no-slots
    if not _slots_may_have_changed(backend):
        return backend.slots
    slots = await _get_json(pool, backend, "/slots")
    if not isinstance(slots, list) or not all(isinstance(s, dict) for s in slots):
        raise ProbeFailed("GET /slots answered with something other than a list of slots")
    busy = sum(1 for s in slots if s.get("is_processing") is True)
    return SlotReport(busy=busy, idle=len(slots) - busy)


async def _probe_llamacpp(pool: Pool, backend: Backend) -> ProbeReport:
    await _get_json(pool, backend, "/health")
    props = await _get_json(pool, backend, "/props")
    models = _entries(await _get_json(pool, backend, "/v1/models"), "data")
    size = next((s for s in (_size(m.get("meta", {}).get("size")) for m in models) if s is not None), None)
    # Without --alias the id (and only alias) is the model file's path: not a name chosen to serve under.
    names = [n for m in models for n in (m.get("id"), *_list(m.get("aliases")))]
    listed = _names(backend, (n for n in names if n != props.get("model_path")))
    loaded = props.get("is_sleeping") is not True
    used = None if size is None else (size if loaded else 0)
    # One llama-server serves one model under any name the gateway routes to it.
    return ProbeReport(
        models={
            m: ModelReport(loaded=loaded, memory_used_bytes=used, memory_total_bytes=size)
            for m in (*backend.config.models, *listed)
        },
        listed=listed,
        slots=await _llamacpp_slots(pool, backend, props),
    )


async def _probe_ollama(pool: Pool, backend: Backend) -> ProbeReport:
    running = _entries(await _get_json(pool, backend, "/api/ps"), "models")
    available = _entries(await _get_json(pool, backend, "/api/tags"), "models")
    # Ollama reads "llama3.2" as "llama3.2:latest": such a name is listed as configured.
    configured = {_strip_latest(m): m for m in backend.config.models}

    def name(entry: dict[str, Any]) -> str | None:
        raw = entry.get("name") or entry.get("model")
        return configured.get(_strip_latest(raw), raw) if isinstance(raw, str) else None

    loaded = {name(entry): entry for entry in running}
    listed = _names(backend, (name(entry) for entry in available))
    models = {}
    for model in (*backend.config.models, *listed):
        entry = loaded.get(model)
        if entry is None:
            models[model] = ModelReport(loaded=False, memory_used_bytes=0, memory_total_bytes=0)
        else:
            models[model] = ModelReport(
                loaded=True,
                memory_used_bytes=_size(entry.get("size_vram")),
                memory_total_bytes=_size(entry.get("size")),
            )
    return ProbeReport(models=models, listed=listed)


async def _probe_openai(pool: Pool, backend: Backend) -> ProbeReport:
    listing = await _get_json(pool, backend, "/v1/models")
    listed = _names(backend, (m.get("id") for m in _entries(listing, "data")))
    return ProbeReport(
        models={m: ModelReport(loaded=m in listed) for m in (*backend.config.models, *listed)},
        listed=listed,
    )


_PROBES = {"llamacpp": _probe_llamacpp, "ollama": _probe_ollama, "openai": _probe_openai}


async def probe(pool: Pool, backend: Backend, timeout: float) -> None:
    """Probe one backend and record the outcome on it."""
    now = time.monotonic()
    if backend.breaker.state is BreakerState.OPEN and now < backend.breaker.open_until:
        return  # cooling down: leave it alone until the cooldown is over
    try:
        async with asyncio.timeout(timeout):
            report = await _PROBES[backend.config.kind](pool, backend)
    except (UpstreamError, TimeoutError, ProbeFailed, AttributeError, TypeError) as exc:
        backend.record_probe_failure(f"probe: {exc.__class__.__name__}: {exc}")
        backend.breaker.record_failure(time.monotonic())
        log.warning("probe failed", extra={"backend": backend.name, "error": backend.last_error})
        return
    backend.record_probe(report)
    if backend.breaker.state is not BreakerState.CLOSED:
        backend.breaker.record_success()
        log.info("backend recovered", extra={"backend": backend.name})


async def probe_all(pools: Mapping[str, Pool], backends: list[Backend], timeout: float) -> None:
    """Probe every backend at once, each over its pool and within `timeout` seconds."""
    await asyncio.gather(*(probe(pools[b.name], b, timeout) for b in backends))
