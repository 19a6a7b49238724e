"""Active health probes: cheap reads that never load a model.

    llamacpp  GET /health (200 once the model is loaded), GET /v1/models (model size, meta.size)
    ollama    GET /api/ps (loaded models with size and size_vram; answering at all means healthy)
    openai    GET /v1/models (with the backend's key)

A probe result feeds the same circuit breaker as real requests; while the breaker is open and its
cooldown is over, a successful probe is the half-open trial that closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from ._backends import Backend, BreakerState, ModelReport
from ._upstream import Pool, UpstreamError

_USER_AGENT = "User-Agent: model-gateway-probe\r\n"

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
    except ValueError:
        raise ProbeFailed(f"GET {path} answered with a body that is not JSON") from None


def _strip_latest(name: str) -> str:
    return name.removesuffix(":latest")


async def _probe_llamacpp(pool: Pool, backend: Backend) -> dict[str, ModelReport]:
    await _get_json(pool, backend, "/health")
    listing = await _get_json(pool, backend, "/v1/models")
    sizes = [m.get("meta", {}).get("size") for m in listing.get("data", []) if isinstance(m, dict)]
    size = next((s for s in sizes if isinstance(s, int)), None)
    # One llama-server serves one model under any name the gateway routes to it.
    return {
        m: ModelReport(loaded=True, memory_used_bytes=size, memory_total_bytes=size)
        for m in backend.config.models
    }


async def _probe_ollama(pool: Pool, backend: Backend) -> dict[str, ModelReport]:
    ps = await _get_json(pool, backend, "/api/ps")
    running = {
        _strip_latest(str(m.get("name") or m.get("model"))): m
        for m in ps.get("models", [])
        if isinstance(m, dict)
    }
    reports = {}
    for model in backend.config.models:
        entry = running.get(_strip_latest(model))
        if entry is None:
            reports[model] = ModelReport(loaded=False, memory_used_bytes=0, memory_total_bytes=0)
        else:
            reports[model] = ModelReport(
                loaded=True, memory_used_bytes=entry.get("size_vram"), memory_total_bytes=entry.get("size")
            )
    return reports


async def _probe_openai(pool: Pool, backend: Backend) -> dict[str, ModelReport]:
    listing = await _get_json(pool, backend, "/v1/models")
    listed = {m.get("id") for m in listing.get("data", []) if isinstance(m, dict)}
    return {m: ModelReport(loaded=m in listed) for m in backend.config.models}


_PROBES = {"llamacpp": _probe_llamacpp, "ollama": _probe_ollama, "openai": _probe_openai}


async def probe(pool: Pool, backend: Backend, timeout: float) -> None:
    """Probe one backend and record the outcome on it."""
    now = time.monotonic()
    if backend.breaker.state is BreakerState.OPEN and now < backend.breaker.open_until:
        return  # cooling down: leave it alone until the cooldown is over
    try:
        async with asyncio.timeout(timeout):
            reports = await _PROBES[backend.config.kind](pool, backend)
    except (UpstreamError, TimeoutError, ProbeFailed, AttributeError, TypeError) as exc:
        backend.last_probe_ok = False
        backend.last_error = f"probe: {exc.__class__.__name__}: {exc}"
        for report in backend.reports.values():
            report.loaded = False
        backend.breaker.record_failure(time.monotonic())
        log.warning("probe failed", extra={"backend": backend.name, "error": backend.last_error})
        return
    backend.last_probe_ok = True
    backend.reports = reports
    if backend.breaker.state is not BreakerState.CLOSED:
        backend.breaker.record_success()
        log.info("backend recovered", extra={"backend": backend.name})


async def probe_all(pools: Mapping[str, Pool], backends: list[Backend], timeout: float) -> None:
    """Probe every backend at once, each over its pool and within `timeout` seconds."""
    await asyncio.gather(*(probe(pools[b.name], b, timeout) for b in backends))
