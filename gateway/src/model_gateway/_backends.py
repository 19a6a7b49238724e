"""A backend's run-time state: circuit breaker, concurrency slots, Retry-After, what it reports.

The breaker is fed by real requests (passive health) and by the active probes alike:

    closed ──(N consecutive failures)──> open ──(cooldown over)──> half-open
       ^                                  ^                           │ one request or probe
       └──────────────(success)───────────┴───────(failure)───────────┘
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ._config import BackendConfig

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """Per-backend circuit breaker with a cooldown and a single half-open trial."""

    failure_threshold: int
    cooldown: float
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False

    def allow(self, now: float) -> bool:
        """May a request (or probe) go to this backend now? Claims the half-open trial if it does."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now < self.open_until:
                return False
            self.state = BreakerState.HALF_OPEN
            self.trial_in_flight = False
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def release_trial(self) -> None:
        """The trial ended without a verdict on the backend (e.g. the client went away)."""
        self.trial_in_flight = False

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.trial_in_flight = False

    def record_failure(self, now: float) -> None:
        self.trial_in_flight = False
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.open_until = now + self.cooldown


@dataclass(slots=True)
class ModelReport:
    """What the backend itself says about one model (never found out by loading it)."""

    loaded: bool
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SlotReport:
    """A llama-server's request slots: `busy` are processing a request, `idle` are free."""

    busy: int
    idle: int
    # False when inferred without reading /slots (a sleeping server processes nothing).
    read: bool = True


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What one successful probe learnt: per model name, the slots, and the names the backend lists."""

    models: dict[str, ModelReport]
    # Names the backend itself says it serves (besides, or beyond, the configured ones).
    listed: tuple[str, ...] = ()
    slots: SlotReport | None = None


@dataclass(slots=True)
class Backend:
    """One configured backend and everything the gateway has learnt about it."""

    config: BackendConfig
    breaker: Breaker
    in_flight: int = 0
    # Monotonic time before which the backend asked (with 429 Retry-After) not to be sent requests.
    wait_until: float = 0.0
    last_probe_ok: bool | None = None
    last_error: str | None = None
    reports: dict[str, ModelReport] = field(default_factory=dict)
    # Names the backend listed at its last successful probe (kept while it is unreachable).
    listed: tuple[str, ...] = ()
    slots: SlotReport | None = None
    # Called when `listed` changes (the router rebuilds its table and the /v1/models answer).
    on_listed_change: Callable[[], None] | None = None
    # Requests waiting for one of the `max_concurrency` slots, first come first served; a future
    # may wait on several backends at once and takes the first slot any of them frees.
    waiters: collections.deque[asyncio.Future[Backend]] = field(default_factory=collections.deque)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def full(self) -> bool:
        return self.in_flight >= self.config.max_concurrency

    def try_acquire(self) -> bool:
        """Take a slot if one is free (a freed slot goes to a waiter first, see `release`)."""
        if self.in_flight >= self.config.max_concurrency:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """Give a slot back: to the longest-waiting request still waiting, or free it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(self)  # the slot changes hands; in_flight stays
                return
        self.in_flight -= 1

    def up(self) -> bool:
        """Is the backend believed to serve (breaker closed, last probe, if any, fine)?"""
        return self.breaker.state is BreakerState.CLOSED and self.last_probe_ok is not False

    def state(self) -> dict[str, object]:
        """The backend as /health shows it (no URL credentials, no keys)."""
        return {
            "name": self.name,
            "kind": self.config.kind,
            "up": self.up(),
            "breaker": self.breaker.state.value,
            "in_flight": self.in_flight,
            "last_error": self.last_error,
            "models": {m: r.loaded for m, r in sorted(self.reports.items())},
        }

    def record_probe(self, report: ProbeReport) -> None:
        """Keep what a successful probe learnt; tell the listener when the listed names changed."""
        self.last_probe_ok = True
        self.reports = report.models
        self.slots = report.slots
        if report.listed != self.listed:
            self.listed = report.listed
            if self.on_listed_change is not None:
                self.on_listed_change()

    def record_probe_failure(self, error: str) -> None:
        """The backend did not answer its probe: nothing it serves is known to be loaded any more."""
        self.last_probe_ok = False
        self.last_error = error
        for report in self.reports.values():
            report.loaded = False
            if report.memory_used_bytes is not None:
                report.memory_used_bytes = 0
        self.slots = None

    def retry_after(self, now: float) -> float:
        """Seconds until this backend takes requests again (0 when it does now)."""
        waits = [self.wait_until - now]
        if self.breaker.state is BreakerState.OPEN:
            waits.append(self.breaker.open_until - now)
        return max(0.0, *waits)


def make_backends(configs: tuple[BackendConfig, ...], failures: int, cooldown: float) -> list[Backend]:
    return [
        Backend(config=c, breaker=Breaker(failure_threshold=failures, cooldown=cooldown)) for c in configs
    ]
