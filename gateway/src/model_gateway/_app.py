"""The gateway's endpoints: routing by path, auth, request validation, and start-up/shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _logging
from ._backends import ENDPOINTS, Backend, make_backends
from ._config import Settings
from ._errors import BadRequest, GatewayError, NotFound, PassThrough, Unauthorized, error_response
from ._http import Request, Response
from ._metrics import CONTENT_TYPE, Metrics
from ._probes import probe_all
from ._proxy import Call, Forwarder, Outcome
from ._router import Router

log = logging.getLogger("model_gateway")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A \uD800-\uDFFF escape: only then can the parsed body hold a lone surrogate (checked slowly).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# The integers the gateway validates must fit a signed 64-bit integer (what the backends parse
# them into); a number field's integer must be exact as a double.
_INT_MAX = 2**63 - 1
_EXACT_MAX = 2**53
# A route: the request and its id in, a whole answer (or None once a stream was sent) out.
Route = Callable[[Request, str], Awaitable[Response | None]]
_JSON_HEADERS = {"Content-Type": "application/json"}
_NUMBER = (int, float)


def _is_number(value: Any) -> bool:
    """A finite number (1e999 parses as inf; a 30-digit integer is no sane parameter)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and -_EXACT_MAX <= value <= _EXACT_MAX


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT_MAX - 1 <= value <= _INT_MAX


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Objects with a key twice are refused: the gateway would check one value and a backend might
    use the other (`{"model": "m2", "model": "m1"}` past the allowlist)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("an object has the same key twice")
    return obj


# Strict JSON (RFC 8259): no NaN/Infinity literals, no duplicate keys. Measured: about 1 us a
# typical chat body over a plain decoder, which decoding UTF-8 first instead of letting json.loads
# sniff the encoding wins back.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
    )


def _is_text_or_list(value: Any) -> bool:
    return (isinstance(value, str) and bool(value)) or (isinstance(value, list) and bool(value))


# Per endpoint: the field that must be present, and type checks for the common optional fields.
_REQUIRED = {
    "/v1/chat/completions": ("messages", _is_messages, "a non-empty list of messages, each with a 'role'"),
    "/v1/completions": ("prompt", _is_text_or_list, "a non-empty string or list"),
    "/v1/embeddings": ("input", _is_text_or_list, "a non-empty string or list"),
}
_OPTIONAL: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stream": (lambda v: isinstance(v, bool), "a boolean"),
    "max_tokens": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "max_completion_tokens": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "n": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "seed": (_is_int, "an integer"),
    "stop": (lambda v: v is None or isinstance(v, str | list), "a string or a list of strings"),
    "stream_options": (lambda v: v is None or isinstance(v, dict), "an object"),
}


class Gateway:
    """The request handlers, holding the settings, backends, router and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends: list[Backend] = make_backends(
            settings.backends, settings.breaker_failures, settings.breaker_cooldown
        )
        self.router = Router(self.backends, settings.aliases, settings.allowed_models)
        self.metrics = Metrics()
        self._keys = [k.encode() for k in settings.api_keys]
        self.access_log = _logging.AccessLog()
        self.forwarder = Forwarder(settings, self.router, self.metrics)
        self._tasks: list[asyncio.Task[None]] = []
        # path -> (method, route); every other path is 404, another method 405.
        self._routes: dict[str, tuple[str, Route]] = {path: ("POST", self.proxied) for path in ENDPOINTS}
        self._routes["/v1/models"] = ("GET", self.models)
        self._routes["/health"] = ("GET", self.health)
        if settings.metrics:
            self._routes["/metrics"] = ("GET", self.prometheus)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the access log's flusher and the probes (call with the event loop running)."""
        self._tasks.append(asyncio.create_task(self.access_log.run()))
        if self.settings.probe_interval > 0:
            self._tasks.append(asyncio.create_task(self._probe_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.access_log.flush()
        self.forwarder.close()

    async def _probe_loop(self) -> None:
        while True:
            await probe_all(self.forwarder.pools, self.backends, self.settings.timeouts.connect + 5)
            self.metrics.refresh_backends(self.backends)
            await asyncio.sleep(self.settings.probe_interval)

    # -- the server's entry point ----------------------------------------------------------------
    async def handle(self, request: Request) -> Response | None:
        """Route by path and method; request id in and out; every error in OpenAI's shape."""
        incoming = request.headers.get("x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(12).hex()
        route = self._routes.get(request.path)
        try:
            if route is None:
                raise NotFound(f"No such path: {request.path}", code="invalid_path")
            method, handler = route
            if request.method != method:
                raise BadRequest(
                    f"Use {method} for {request.path}",
                    status=405,
                    code="method_not_allowed",
                    headers={"Allow": method},
                )
            response = await handler(request, request_id)
        except PassThrough as exc:
            response = exc.response
        except GatewayError as exc:
            response = error_response(exc)
        if response is not None:
            response.headers["X-Request-Id"] = request_id
        return response

    def check_head(self, request: Request) -> Response | None:
        """The server's `head_check`: a request for a /v1 path with a body but without a valid key
        is answered 401 before a byte of its body is read (or buffered)."""
        if not request.path.startswith("/v1/"):
            return None
        try:
            self._check_key(request)
        except Unauthorized as exc:
            self.metrics.error("unknown", "none", request.path, "rejected")
            if self.settings.access_log:
                self.access_log.write(
                    request_id=os.urandom(12).hex(),
                    endpoint=request.path,
                    model="unknown",
                    backend="none",
                    status=exc.status,
                    stream=False,
                    attempts=0,
                    latency_ms=0.0,
                    trace=None,
                    error=None,
                )
            return error_response(exc)
        return None

    # -- helpers ---------------------------------------------------------------------------------
    def _check_key(self, request: Request) -> None:
        if self.settings.allow_unauthenticated and not self._keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer KEY'", code="missing_api_key")
        candidate = key.strip().encode("latin-1")  # the bytes as received
        # compare_digest against every key: the time taken does not say which key nearly matched.
        matches = [hmac.compare_digest(candidate, k) for k in self._keys]
        if not any(matches):
            raise Unauthorized("Incorrect API key provided", code="invalid_api_key")

    @staticmethod
    def _parse_json(body: bytes) -> dict[str, Any]:
        """The body as a JSON object, or a 400: UTF-8 only (json.loads alone would take UTF-16 and
        UTF-32, and UTF-8-encoded surrogates), no byte order mark, no lone surrogate escapes."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The request body is not UTF-8", code="invalid_encoding") from None
        if text.startswith("\ufeff"):
            raise BadRequest("The request body starts with a byte order mark", code="invalid_encoding")
        try:
            parsed = _DECODER.decode(text)
            if _SURROGATE_ESCAPE.search(body) is not None:
                json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
        except UnicodeEncodeError:
            message = "The request body has a lone surrogate escape"
            raise BadRequest(message, code="invalid_encoding") from None
        except RecursionError:
            raise BadRequest("The request body is nested too deeply", code="invalid_json") from None
        except ValueError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(parsed, dict):
            raise BadRequest("The request body must be a JSON object", code="invalid_json")
        return parsed

    def _validate(self, endpoint: str, payload: dict[str, Any]) -> None:
        field, check, expected = _REQUIRED[endpoint]
        if field not in payload:
            raise BadRequest(
                f"Missing required parameter: '{field}'", param=field, code="missing_required_parameter"
            )
        if not check(payload[field]):
            raise BadRequest(f"'{field}' must be {expected}", param=field, code="invalid_type")
        for name in _OPTIONAL.keys() & payload.keys():
            ok, what = _OPTIONAL[name]
            if not ok(payload[name]):
                raise BadRequest(f"'{name}' must be {what}", param=name, code="invalid_type")

    # -- routes ----------------------------------------------------------------------------------
    async def proxied(self, request: Request, request_id: str) -> Response | None:
        endpoint = request.path
        started = time.monotonic()
        outcome = Outcome()
        model = "unknown"
        stream = False
        try:
            if not request.head_checked:  # checked once: the server's head_check may have done it
                self._check_key(request)
            payload = self._parse_json(request.body)
            self._validate(endpoint, payload)
            requested = payload.get("model")
            model = self.router.resolve(requested)
            stream = payload.get("stream") is True
            # The bytes go upstream as received, unless an alias changes the model name.
            body = request.body
            if model != requested:
                payload["model"] = model
                body = json.dumps(payload).encode()
            call = Call(endpoint, str(requested), model, body, stream, request_id)
            response = await self.forwarder.forward(request, call, outcome)
            outcome.status = response.status if response is not None else 200
            return response
        except GatewayError as exc:
            outcome.status = exc.status
            if not isinstance(exc, PassThrough) and exc.status < 500:
                self.metrics.error(model, outcome.backend, endpoint, "rejected")
            elif exc.status >= 500:
                self.metrics.error(model, outcome.backend, endpoint, "exhausted")
            raise
        except asyncio.CancelledError:
            outcome.status = 499  # the client went away; nginx's convention for the log
            self.metrics.error(model, outcome.backend, endpoint, "client_disconnect")
            raise
        finally:
            elapsed = time.monotonic() - started
            self.metrics.observe_request(model, outcome.backend, endpoint, outcome.status, elapsed)
            if self.settings.access_log:
                trace = None
                if self.settings.gcp_project:
                    trace = _logging.trace_id(
                        request.headers.get("x-cloud-trace-context"),
                        request.headers.get("traceparent"),
                        self.settings.gcp_project,
                    )
                self.access_log.write(
                    request_id=request_id,
                    endpoint=endpoint,
                    model=model,
                    backend=outcome.backend,
                    status=outcome.status,
                    stream=stream,
                    attempts=outcome.attempts,
                    latency_ms=elapsed * 1000,
                    trace=trace,
                    error=outcome.error,
                )

    async def models(self, request: Request, request_id: str) -> Response:
        self._check_key(request)
        # Rendered by the router whenever a probe changes the names: one attribute read here.
        return Response(200, self.router.models_body, dict(_JSON_HEADERS))

    async def health(self, request: Request, request_id: str) -> Response:
        body = {"status": "ok", "backends": [b.state() for b in self.backends]}
        return Response(200, json.dumps(body).encode(), dict(_JSON_HEADERS))

    async def prometheus(self, request: Request, request_id: str) -> Response:
        self.metrics.refresh_backends(self.backends)
        return Response(200, self.metrics.exposition(), {"Content-Type": CONTENT_TYPE})
