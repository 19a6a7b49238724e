"""Forwarding one request to the backends, with failover before the first byte only.

An attempt ends in one of three ways:
  * the client got an answer (a 2xx, or a 4xx that is the client's fault and passes through);
  * the backend failed before any byte reached the client (connect error, timeout, 5xx, 429):
    the next candidate gets the request;
  * the stream broke after bytes reached the client: the client's stream ends with an explicit
    SSE error event and no `data: [DONE]`, so no client mistakes a cut for a complete answer
    (a non-streamed answer too large to buffer is streamed through; a cut closes the connection
    before its end).

A backend at its `max_concurrency` is waited for (at most `max_pending` requests per backend, each
for at most `pending_timeout`) rather than refused: llama.cpp and Ollama queue requests themselves,
and a burst of clients is ordinary. A request finding every backend out because it asked to wait
(an upstream 429) gets a 429 with the shortest remaining wait; 503 is for backends that are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from ._backends import Backend, BreakerState
from ._config import Settings
from ._errors import PassThrough, RateLimited, UpstreamFailed
from ._http import ClientGone, Request, Response, ResponseStream
from ._metrics import Metrics
from ._router import Router
from ._upstream import ConnectFailed, Pool, UpstreamError
from ._upstream import Response as UpstreamResponse

log = logging.getLogger("model_gateway.proxy")

_DONE = b"data: [DONE]"
_TAIL_BYTES = 4096
_USER_AGENT = "User-Agent: model-gateway\r\n"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_USAGE_KEY = b'"usage"'
_JSON = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Call:
    """One client request, validated: what to send and where it was asked."""

    endpoint: str  # e.g. "/v1/chat/completions"
    requested_model: str
    model: str  # after alias resolution
    body: bytes
    stream: bool
    request_id: str


@dataclass(slots=True)
class Failure:
    """Why an attempt did not answer the client; `reason` is the ai_request_errors_total label."""

    reason: str
    detail: str
    retry_after: float | None = None
    response: Response | None = None  # an upstream 429 to pass through when no backend is left


@dataclass(slots=True)
class _Relay:
    """An answer to stream through: its head, and the body bytes already read."""

    upstream: UpstreamResponse
    first: bytes
    status: int
    headers: dict[str, str]
    length: int | None  # the body's size when known (Content-Length); SSE streams: None
    sse: bool


@dataclass(slots=True)
class Outcome:
    """What the access log and latency metric need to know about a finished request."""

    backend: str = "none"
    status: int = 0
    attempts: int = 0
    error: str | None = None


class _Deadline:
    """`asyncio.timeout(delay)` as a plain `with` block, with the same semantics.

    On the hot path (once per request, and once per stream chunk) asyncio's async context
    manager cost about 6% of a proxied request's instructions (callgrind, see README); this
    one is a timer handle and two attribute stores. Expiry cancels the task; the CancelledError
    this causes leaves the block as TimeoutError, any other cancellation passes through.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, delay: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._handle = asyncio.get_running_loop().call_later(max(0.0, delay), self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._handle.cancel()
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


# How long a backend that answered 429 without a (usable) Retry-After is left alone.
_DEFAULT_RETRY_AFTER_S = 1.0


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Retry-After (RFC 9110 §10.2.3: delta-seconds or an HTTP-date) as seconds from now, at most
    `cap`; None when absent or not one of those forms ("inf", "1e3", "-1", garbage)."""
    if value is None:
        return None
    value = value.strip(" \t")
    if value.isascii() and value.isdigit():
        return cap if len(value) > 12 else min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
        delta = when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, delta), cap)


def _error_event(message: str, code: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": code}
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


def _usage_from_body(body: bytes) -> object:
    """The `usage` object of a whole JSON answer, parsed alone rather than with the whole answer.

    Unescaped, `"usage"` followed by a colon can only be an object key; OpenAI-compatible servers
    put the top-level one after `choices`, so the last one is taken.
    """
    at = body.rfind(_USAGE_KEY)
    if at < 0:
        return None
    rest = body[at + len(_USAGE_KEY) :].decode("utf-8", "replace").lstrip()
    if not rest.startswith(":"):
        return None
    try:
        return _JSON.raw_decode(rest[1:].lstrip())[0]
    except (ValueError, RecursionError):
        return None


def _usage_from_events(tail: bytes) -> object:
    """The `usage` object of the last SSE event that carries one, if any."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                return json.loads(line[6:]).get("usage")
            except (ValueError, RecursionError):
                return None
    return None


def _expire(waiter: asyncio.Future[Backend]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _read_up_to(upstream: UpstreamResponse, limit: int) -> tuple[bytes, bool]:
    """The body if it ends within `limit` bytes (True), else what was read past the limit (False)."""
    if upstream.length is not None and upstream.length <= limit:
        return await upstream.read(), True
    parts: list[bytes] = []
    size = 0
    while piece := await upstream.readany():
        parts.append(piece)
        size += len(piece)
        if size > limit:
            return b"".join(parts), False
    return b"".join(parts), True


class Forwarder:
    """Sends validated calls to the backends, in the router's order, and streams the answer back."""

    def __init__(self, settings: Settings, router: Router, metrics: Metrics) -> None:
        self._settings = settings
        self._router = router
        self._metrics = metrics
        self.pools = {b.name: Pool(b.url, settings.timeouts.connect) for b in settings.backends}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    async def forward(self, request: Request, call: Call, outcome: Outcome) -> Response | None:
        """The whole answer, or None when a stream was sent (ended with an error event if it broke)."""
        failure: Failure | None = None
        candidates = self._router.candidates(call.model)
        tried: set[int] = set()  # id()s: a property read and a hash of a name cost more
        down_wait = limited_wait = math.inf
        while outcome.attempts < self._settings.max_attempts:
            now = time.monotonic()
            down_wait = limited_wait = math.inf
            chosen: Backend | None = None
            full: list[Backend] = []
            for backend in candidates:
                if id(backend) in tried:
                    continue
                if backend.wait_until > now:
                    limited_wait = min(limited_wait, backend.wait_until - now)
                    continue
                if not backend.breaker.allow(now):
                    down_wait = min(down_wait, backend.retry_after(now))
                    continue
                if not backend.try_acquire():
                    if backend.breaker.state is BreakerState.HALF_OPEN:
                        backend.breaker.release_trial()
                    full.append(backend)
                    continue
                chosen = backend
                break
            if chosen is None:
                if not full:
                    break
                chosen = await self._wait_for_slot(call, full)
                now = time.monotonic()
                if chosen.wait_until > now or not chosen.breaker.allow(now):
                    chosen.release()  # it went out of rotation while we waited: look again
                    continue
            tried.add(id(chosen))
            outcome.attempts += 1
            outcome.backend = chosen.name
            result = await self._attempt(request, call, chosen)
            if not isinstance(result, Failure):
                return result
            failure = result
            outcome.error = f"{chosen.name}: {failure.detail}"
            self._metrics.error(call.model, chosen.name, call.endpoint, failure.reason)
            self._metrics.failover(chosen.name)
            log.warning(
                "backend failed before the first byte",
                extra={"request_id": call.request_id, "backend": chosen.name, "error": failure.detail},
            )
        outcome.backend = "none"
        raise self._exhausted(call, failure, down_wait, limited_wait)

    async def _wait_for_slot(self, call: Call, full: list[Backend]) -> Backend:
        """Queue for the first slot that one of `full` frees; it is ours (in_flight counted) on return.

        429 when every queue is at `max_pending`, or when no slot came within `pending_timeout`."""
        settings = self._settings
        queues = [b for b in full if len(b.waiters) < settings.max_pending]
        if not queues or settings.pending_timeout <= 0:
            raise RateLimited(
                f"Every backend for '{call.requested_model}' is at its concurrency limit"
                " and its queue is full",
                retry_after=1,
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Backend] = loop.create_future()
        for backend in queues:
            backend.waiters.append(waiter)
        expiry = loop.call_later(settings.pending_timeout, _expire, waiter)
        try:
            return await waiter
        except TimeoutError:
            raise RateLimited(
                f"Every backend for '{call.requested_model}' stayed at its concurrency limit"
                f" for {settings.pending_timeout:g}s",
                retry_after=1,
            ) from None
        except BaseException:
            # Cancelled (the client left) after a slot was handed over, before we woke: give it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().release()
            raise
        finally:
            expiry.cancel()
            for backend in queues:
                with contextlib.suppress(ValueError):  # it was handed a slot (or taken off as done)
                    backend.waiters.remove(waiter)

    def _exhausted(
        self, call: Call, failure: Failure | None, down_wait: float, limited_wait: float
    ) -> Exception:
        """The answer when no backend answered: upstream 429, our own 429, or 502/503/504."""
        if failure is not None and failure.response is not None:
            return PassThrough(failure.response)
        if failure is None and not math.isinf(limited_wait):
            # Out only because they asked to wait (an upstream 429): rate limiting, not an outage.
            return RateLimited(
                f"Every backend for '{call.requested_model}' asked to wait (upstream 429)",
                retry_after=max(1, math.ceil(limited_wait)),
                code="upstream_rate_limited",
            )
        if failure is None:
            wait = 1 if math.isinf(down_wait) else max(1, math.ceil(down_wait))
            return UpstreamFailed(
                f"No backend for '{call.requested_model}' is available",
                status=503,
                code="backends_unavailable",
                headers={"Retry-After": str(wait)},
            )
        status = 504 if failure.reason == "timeout" else 502
        return UpstreamFailed(
            f"Every backend for '{call.requested_model}' failed; last: {failure.detail}",
            status=status,
            code="upstream_timeout" if status == 504 else "upstream_error",
        )

    async def _attempt(self, request: Request, call: Call, backend: Backend) -> Response | Failure | None:
        """One try on `backend`, whose slot the caller took; the slot is released here."""
        upstream: UpstreamResponse | None = None
        verdict_given = False
        try:
            start = time.monotonic()
            result = await self._until_first_byte(call, backend)
            verdict_given = True
            if not isinstance(result, _Relay):
                if isinstance(result, Failure) and result.reason != "upstream_429":
                    backend.breaker.record_failure(time.monotonic())
                    backend.last_error = result.detail
                elif isinstance(result, Failure):
                    backend.breaker.release_trial()
                else:
                    backend.breaker.record_success()
                return result
            upstream = result.upstream
            if result.sse:
                self._metrics.first_token(call.model, backend.name, time.monotonic() - start)
                await self._relay_stream(request, call, backend, upstream, result.first, start)
            else:
                await self._relay_body(request, call, backend, result, start)
            return None
        finally:
            if upstream is not None:
                upstream.close()  # a no-op once the body was read to the end; otherwise cancels upstream
            if not verdict_given:
                backend.breaker.release_trial()  # cancelled by a client disconnect: no verdict
            backend.release()

    async def _until_first_byte(self, call: Call, backend: Backend) -> Response | Failure | _Relay:
        """Send the request; return a whole answer, a failure, or an answer to stream through."""
        headers = f"Content-Type: application/json\r\nX-Request-Id: {call.request_id}\r\n{_USER_AGENT}"
        if backend.config.api_key:
            headers += f"Authorization: Bearer {backend.config.api_key}\r\n"
        timeouts = self._settings.timeouts
        upstream: UpstreamResponse | None = None
        try:
            with _Deadline(min(timeouts.first_byte, timeouts.total)):
                upstream = await self.pools[backend.name].request("POST", call.endpoint, headers, call.body)
                status = upstream.status
                content_type = upstream.headers.get("content-type", "application/json")
                if status >= 500 or status == 408:
                    return Failure("upstream_5xx", f"upstream answered {status}")
                if status == 429:
                    wait = retry_after_seconds(
                        upstream.headers.get("retry-after"), self._settings.retry_after_max
                    )
                    if wait is None:
                        wait = _DEFAULT_RETRY_AFTER_S
                    backend.wait_until = time.monotonic() + wait
                    body, complete = await _read_up_to(upstream, self._settings.max_buffered_answer_bytes)
                    passed = Response(
                        429,
                        body if complete else b"",
                        {
                            "Content-Type": content_type,
                            "Retry-After": str(max(1, math.ceil(wait))),
                            "X-Gateway-Backend": backend.name,
                        },
                    )
                    return Failure(
                        "upstream_429", f"upstream answered 429 (Retry-After {wait:g}s)", wait, passed
                    )
                # Any other answer is passed through: a 2xx, or a 4xx that is the client's fault (no
                # failover, no cooldown; the breaker counts it as the backend working).
                if not (call.stream and status == 200 and content_type.startswith("text/event-stream")):
                    headers_out = {"Content-Type": content_type, "X-Gateway-Backend": backend.name}
                    limit = self._settings.max_buffered_answer_bytes
                    if upstream.length is not None and upstream.length <= limit:
                        body, complete = await upstream.read(), True  # the common case, inline
                    else:
                        body, complete = await _read_up_to(upstream, limit)
                    if not complete:  # too large to hold: streamed through
                        result = _Relay(upstream, body, status, headers_out, upstream.length, sse=False)
                        upstream = None  # the caller owns it now
                        return result
                    if status == 200:
                        self._metrics.usage(call.model, backend.name, _usage_from_body(body))
                    return Response(status, body, headers_out)
                first = await upstream.readany()
                if not first:
                    return Failure("stream_cut", "upstream stream closed before any data")
                result = _Relay(upstream, first, 200, {}, None, sse=True)
                upstream = None  # the caller owns it now
                return result
        except ConnectFailed as exc:
            return Failure("connect", str(exc))
        except TimeoutError:
            return Failure("timeout", "timed out waiting for the first byte")
        except UpstreamError as exc:
            return Failure("upstream_5xx", f"{exc.__class__.__name__}: {exc}")
        finally:
            if upstream is not None:
                upstream.close()

    async def _relay_stream(
        self,
        request: Request,
        call: Call,
        backend: Backend,
        upstream: UpstreamResponse,
        first: bytes,
        start: float,
    ) -> None:
        """Send the stream on; the client has its 200 from here on, so failures end it explicitly."""
        headers = {**_SSE_HEADERS, "X-Gateway-Backend": backend.name, "X-Request-Id": call.request_id}
        chunk = first
        # The stream's last bytes: where `data: [DONE]` and the usage event are, whatever the chunking.
        tail = b""
        timeouts = self._settings.timeouts
        deadline = start + timeouts.total
        try:
            response = request.start_stream(200, headers)
            while chunk:
                await response.write(chunk)
                tail = (tail + chunk)[-_TAIL_BYTES:]
                with _Deadline(min(timeouts.idle, deadline - time.monotonic())):
                    chunk = await upstream.readany()
        except ClientGone:
            # The client went away: drop the upstream request; not the backend's fault.
            self._metrics.error(call.model, backend.name, call.endpoint, "client_disconnect")
            return
        except (UpstreamError, TimeoutError) as exc:
            reason = "idle or total timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
            await self._end_with_error(
                call, backend, response, f"upstream stream broke: {reason}", "upstream_stream_cut"
            )
            return
        if not tail.rstrip().endswith(_DONE):
            await self._end_with_error(
                call, backend, response, "upstream stream ended without [DONE]", "upstream_stream_incomplete"
            )
            return
        backend.breaker.record_success()
        self._metrics.usage(call.model, backend.name, _usage_from_events(tail))
        response.end()

    async def _relay_body(
        self, request: Request, call: Call, backend: Backend, relay: _Relay, start: float
    ) -> None:
        """Send on a non-streamed answer too large to buffer; a cut closes the client's connection
        before the answer's end (the only way to say it, once the head is sent)."""
        upstream = relay.upstream
        chunk = relay.first
        tail = b""
        timeouts = self._settings.timeouts
        deadline = start + timeouts.total
        try:
            response = request.start_stream(relay.status, relay.headers, length=relay.length)
            while chunk:
                await response.write(chunk)
                tail = (tail + chunk)[-_TAIL_BYTES:]
                with _Deadline(min(timeouts.idle, deadline - time.monotonic())):
                    chunk = await upstream.readany()
        except ClientGone:
            self._metrics.error(call.model, backend.name, call.endpoint, "client_disconnect")
            return
        except (UpstreamError, TimeoutError) as exc:
            reason = "idle or total timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
            backend.breaker.record_failure(time.monotonic())
            backend.last_error = f"upstream answer broke: {reason}"
            self._metrics.error(call.model, backend.name, call.endpoint, "stream_cut")
            log.warning(backend.last_error, extra={"request_id": call.request_id, "backend": backend.name})
            return
        backend.breaker.record_success()
        if relay.status == 200:
            self._metrics.usage(call.model, backend.name, _usage_from_body(tail))
        response.end()

    async def _end_with_error(
        self, call: Call, backend: Backend, response: ResponseStream, message: str, code: str
    ) -> None:
        backend.breaker.record_failure(time.monotonic())
        backend.last_error = message
        self._metrics.error(call.model, backend.name, call.endpoint, "stream_cut")
        log.warning(message, extra={"request_id": call.request_id, "backend": backend.name})
        try:
            await response.write(_error_event(message, code))
        except ClientGone:
            return
        response.end()
