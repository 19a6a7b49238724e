"""Prometheus metrics (contract §2), on a registry of the app's own.

Label sets are kept small and bounded: model names come from the config, never from the client.
Children are cached per label tuple because `labels()` on the hot path is a measurable cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ._backends import Backend

# 2.0 s is a bucket boundary on purpose: the canary's latency SLO is "under 2 s".
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric the gateway exports, with cached label children."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "ai_request_latency_seconds",
            "Time from request to the last byte of the answer.",
            ["model", "backend", "endpoint", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "ai_request_errors_total",
            "Failed attempts and answers, by reason (connect, timeout, upstream_5xx, upstream_429, "
            "stream_cut, client_disconnect, rejected, exhausted).",
            ["model", "backend", "endpoint", "reason"],
            registry=r,
        )
        self.ttft = Histogram(
            "ai_time_to_first_token_seconds",
            "Time from request to the first body byte from the backend (streaming requests).",
            ["model", "backend"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ai_tokens_total",
            "Tokens from the backends' usage reports.",
            ["model", "backend", "direction"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ai_requests_in_flight", "Requests being served, per backend.", ["backend"], registry=r
        )
        self.backend_up = Gauge(
            "ai_backend_up", "1 while the backend is believed to serve.", ["backend"], registry=r
        )
        self.failovers = Counter(
            "ai_failovers_total",
            "Requests moved on from a backend before any byte was sent.",
            ["backend"],
            registry=r,
        )
        self.model_loaded = Gauge(
            "ai_model_loaded",
            "1 when the backend reports the model loaded, from reads that never load it: llama.cpp "
            "/health ok and /props is_sleeping false; Ollama /api/ps; openai kind listed in /v1/models. "
            "Every name the backend serves under, configured or listed by the backend.",
            ["model", "backend"],
            registry=r,
        )
        self.memory_used = Gauge(
            "ai_memory_used_bytes",
            "Memory the backend reports the model using. Ollama: size_vram from /api/ps (accelerator "
            "memory). llama.cpp: the weights size from /v1/models meta.size while loaded, 0 while asleep "
            "(llama-server reports no accelerator memory).",
            ["model", "backend"],
            registry=r,
        )
        self.memory_total = Gauge(
            "ai_memory_total_bytes",
            "Memory the model takes when loaded, as the backend reports it. Ollama: size from /api/ps "
            "(0 while not loaded). llama.cpp: the weights size from /v1/models meta.size.",
            ["model", "backend"],
            registry=r,
        )
        self.slots = Gauge(
            "ai_backend_slots",
            "llama.cpp request slots by state (busy: processing a request), from /slots is_processing. "
            "Read only while it can have changed (see the gateway README); a sleeping server counts all "
            "slots idle from /props total_slots.",
            ["backend", "state"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        # The latency child per (model, backend, endpoint, status): one lookup per request.
        self._latency_children: dict[tuple[str, str, str, int], Any] = {}
        # Tokens (in, out) per (model, backend) counted since the last scrape.
        self._pending_tokens: dict[tuple[str, str], list[int]] = {}
        # Per backend: the (gauge, labels) series the probes set last, to drop those that went away.
        self._reported: dict[str, set[tuple[Any, tuple[str, ...]]]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, model: str, backend: str, endpoint: str, status: int, seconds: float) -> None:
        key = (model, backend, endpoint, status)
        child = self._latency_children.get(key)
        if child is None:
            status_class = f"{status // 100}xx" if status < 600 else "other"
            child = self._latency_children[key] = self._child(
                self.latency, model, backend, endpoint, status_class
            )
        child.observe(seconds)

    def error(self, model: str, backend: str, endpoint: str, reason: str) -> None:
        self._child(self.errors, model, backend, endpoint, reason).inc()

    def first_token(self, model: str, backend: str, seconds: float) -> None:
        self._child(self.ttft, model, backend).observe(seconds)

    def usage(self, model: str, backend: str, usage: Any) -> None:
        """Count the tokens of a backend's `usage` report (added to `ai_tokens_total` at scrape time)."""
        if not isinstance(usage, dict):
            return
        counts = self._pending_tokens.get((model, backend))
        if counts is None:
            counts = self._pending_tokens[(model, backend)] = [0, 0]
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(prompt) is int and prompt > 0:
            counts[0] += prompt
        if type(completion) is int and completion > 0:
            counts[1] += completion

    def _apply_pending_tokens(self) -> None:
        # Two prometheus-client counter increments a request (each behind a lock) cost more than
        # the rest of the metrics together (callgrind): requests add to plain ints, scrapes apply them.
        for (model, backend), counts in self._pending_tokens.items():
            for direction, index in (("in", 0), ("out", 1)):
                if counts[index]:
                    self._child(self.tokens, model, backend, direction).inc(counts[index])
                    counts[index] = 0

    def failover(self, backend: str) -> None:
        self._child(self.failovers, backend).inc()

    def refresh_backends(self, backends: Iterable[Backend]) -> None:
        """Copy what the probes learnt into the gauges (called on scrape and after each probe)."""
        for backend in backends:
            # Read from the backend's own counter at scrape time: no gauge update per request.
            self._child(self.in_flight, backend.name).set(backend.in_flight)
            self._child(self.backend_up, backend.name).set(1 if backend.up() else 0)
            values: dict[tuple[Any, tuple[str, ...]], float] = {}
            for model, report in backend.reports.items():
                labels = (model, backend.name)
                values[(self.model_loaded, labels)] = 1 if report.loaded else 0
                if report.memory_used_bytes is not None:
                    values[(self.memory_used, labels)] = report.memory_used_bytes
                if report.memory_total_bytes is not None:
                    values[(self.memory_total, labels)] = report.memory_total_bytes
            if backend.slots is not None:
                values[(self.slots, (backend.name, "busy"))] = backend.slots.busy
                values[(self.slots, (backend.name, "idle"))] = backend.slots.idle
            for (metric, labels), value in values.items():
                self._child(metric, *labels).set(value)
            # A model the backend no longer lists (or slots it no longer reports) leaves the exposition.
            for metric, labels in self._reported.get(backend.name, set()) - values.keys():
                metric.remove(*labels)
                del self._children[(id(metric), *labels)]
            self._reported[backend.name] = set(values)

    def exposition(self) -> bytes:
        self._apply_pending_tokens()
        return generate_latest(self.registry)
