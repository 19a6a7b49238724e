"""Forwarding one request to the backends, with failover before the first byte only.

An attempt ends in one of three ways:
  * the client got an answer (a 2xx, or a 4xx that is the client's fault and passes through);
  * the backend failed before any byte reached the client (connect error, timeout, 5xx, 429):
    the next candidate gets the request;
  * the stream broke after bytes reached the client: the client's stream ends with an explicit
    SSE error event and no `data: [DONE]`, so no client mistakes a cut for a complete answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass

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


def _retry_after_seconds(value: str | None) -> float:
    """Retry-After as seconds (delta form; an HTTP date or garbage counts as 1 s)."""
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


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
    except ValueError:
        return None


def _usage_from_events(tail: bytes) -> object:
    """The `usage` object of the last SSE event that carries one, if any."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                return json.loads(line[6:]).get("usage")
            except ValueError:
                return None
    return None


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
        busy = False
        soonest_back = math.inf
        for backend in self._router.candidates(call.model):
            if outcome.attempts >= self._settings.max_attempts:
                break
            now = time.monotonic()
            if backend.wait_until > now or not backend.breaker.allow(now):
                soonest_back = min(soonest_back, backend.retry_after(now))
                continue
            if backend.full:
                if backend.breaker.state is BreakerState.HALF_OPEN:
                    backend.breaker.release_trial()
                busy = True
                continue
            outcome.attempts += 1
            outcome.backend = backend.name
            result = await self._attempt(request, call, backend)
            if not isinstance(result, Failure):
                return result
            failure = result
            outcome.error = f"{backend.name}: {failure.detail}"
            self._metrics.error(call.model, backend.name, call.endpoint, failure.reason)
            self._metrics.failover(backend.name)
            log.warning(
                "backend failed before the first byte",
                extra={"request_id": call.request_id, "backend": backend.name, "error": failure.detail},
            )
        outcome.backend = "none"
        raise self._exhausted(call, failure, busy, soonest_back)

    def _exhausted(self, call: Call, failure: Failure | None, busy: bool, soonest_back: float) -> Exception:
        """The answer when no backend answered: upstream 429, our own 429, or 502/503/504."""
        if failure is not None and failure.response is not None:
            return PassThrough(failure.response)
        if busy:
            return RateLimited(
                f"Every backend for '{call.requested_model}' is at its concurrency limit", retry_after=1
            )
        if failure is None:
            wait = 1 if math.isinf(soonest_back) else max(1, math.ceil(soonest_back))
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
        backend.in_flight += 1
        upstream: UpstreamResponse | None = None
        verdict_given = False
        try:
            start = time.monotonic()
            result = await self._until_first_byte(call, backend)
            verdict_given = True
            if not isinstance(result, tuple):
                if isinstance(result, Failure) and result.reason != "upstream_429":
                    backend.breaker.record_failure(time.monotonic())
                    backend.last_error = result.detail
                elif isinstance(result, Failure):
                    backend.breaker.release_trial()
                else:
                    backend.breaker.record_success()
                return result
            upstream, first = result
            self._metrics.first_token(call.model, backend.name, time.monotonic() - start)
            await self._relay_stream(request, call, backend, upstream, first, start)
            return None
        finally:
            if upstream is not None:
                upstream.close()  # a no-op once the body was read to the end; otherwise cancels upstream
            if not verdict_given:
                backend.breaker.release_trial()  # cancelled by a client disconnect: no verdict
            backend.in_flight -= 1

    async def _until_first_byte(
        self, call: Call, backend: Backend
    ) -> Response | Failure | tuple[UpstreamResponse, bytes]:
        """Send the request; return a whole answer, a failure, or a stream and its first bytes."""
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
                    wait = _retry_after_seconds(upstream.headers.get("retry-after"))
                    backend.wait_until = time.monotonic() + wait
                    passed = Response(
                        429,
                        await upstream.read(),
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
                    body = await upstream.read()
                    if status == 200:
                        self._metrics.usage(call.model, backend.name, _usage_from_body(body))
                    headers_out = {"Content-Type": content_type, "X-Gateway-Backend": backend.name}
                    return Response(status, body, headers_out)
                first = await upstream.readany()
                if not first:
                    return Failure("stream_cut", "upstream stream closed before any data")
                result = (upstream, first)
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
