"""The aiohttp application: auth, request validation, the endpoints, and start-up/shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import _logging
from ._backends import ENDPOINTS, Backend, make_backends
from ._config import Settings
from ._errors import BadRequest, BodyTooLarge, GatewayError, NotFound, Unauthorized, error_response
from ._metrics import CONTENT_TYPE, Metrics
from ._probes import probe_all
from ._proxy import Call, Forwarder, Outcome, _PassThrough
from ._router import Router

log = logging.getLogger("model_gateway")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NUMBER = (int, float)


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


class JsonErrorRequestHandler(RequestHandler):
    """Answers what aiohttp cannot parse (CR/LF injection, bad header bytes) in OpenAI's shape.

    aiohttp's own handler answers in plain text and logs the offending bytes, which may hold a key;
    this one logs only the exception class.
    """

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is broken")
        if status >= 500:
            log.error("unhandled error", exc_info=exc)
            error: GatewayError = GatewayError("Internal error", code="internal_error")
        else:
            log.warning("malformed HTTP request", extra={"error": type(exc).__name__, "status": status})
            error = BadRequest("The request is not valid HTTP", status=status, code="bad_http")
        response = error_response(error)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """AppRunner whose connections answer HTTP parse errors with JSON."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=True,
            loop=asyncio.get_running_loop(),
            **plain._kwargs,
        )


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
        self.route_methods: dict[str, str] = {}  # path -> its method, for 405 answers
        self._forwarder: Forwarder | None = None
        self._models_body = json.dumps(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "llm-canary"}
                    for m in self.router.public_models()
                ],
            }
        ).encode()

    # -- lifecycle -------------------------------------------------------------------------------
    async def _lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self._forwarder = Forwarder(self.settings, self.router, self.metrics)
        tasks = [asyncio.create_task(self.access_log.run())]
        if self.settings.probe_interval > 0:
            tasks.append(asyncio.create_task(self._probe_loop()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.access_log.flush()
            for pool in self._forwarder.pools.values():
                pool.close()

    async def _probe_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeouts.connect + 5)
        async with aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": "model-gateway-probe"}
        ) as session:
            while True:
                await probe_all(session, self.backends)
                self.metrics.refresh_backends(self.backends)
                await asyncio.sleep(self.settings.probe_interval)

    # -- helpers ---------------------------------------------------------------------------------
    def _check_key(self, request: web.Request) -> None:
        if self.settings.allow_unauthenticated and not self._keys:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer KEY'", code="missing_api_key")
        candidate = key.strip().encode("utf-8", "surrogateescape")  # raw bytes: never equal to a key
        # compare_digest against every key: the time taken does not say which key nearly matched.
        matches = [hmac.compare_digest(candidate, k) for k in self._keys]
        if not any(matches):
            raise Unauthorized("Incorrect API key provided", code="invalid_api_key")

    async def _read_json(self, request: web.Request) -> tuple[bytes, dict[str, Any]]:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge(f"The request body is over the limit of {limit} bytes", code="body_too_large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(
                f"The request body is over the limit of {limit} bytes", code="body_too_large"
            ) from None
        try:
            parsed = json.loads(body)
        except UnicodeDecodeError:
            raise BadRequest("The request body is not UTF-8", code="invalid_encoding") from None
        except ValueError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(parsed, dict):
            raise BadRequest("The request body must be a JSON object", code="invalid_json")
        return body, parsed

    def _validate(self, endpoint: str, payload: dict[str, Any]) -> None:
        field, check, expected = _REQUIRED[endpoint]
        if field not in payload:
            raise BadRequest(
                f"Missing required parameter: '{field}'", param=field, code="missing_required_parameter"
            )
        if not check(payload[field]):
            raise BadRequest(f"'{field}' must be {expected}", param=field, code="invalid_type")
        for name, (ok, what) in _OPTIONAL.items():
            if name in payload and not ok(payload[name]):
                raise BadRequest(f"'{name}' must be {what}", param=name, code="invalid_type")

    # -- handlers --------------------------------------------------------------------------------
    async def proxied(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path
        request_id: str = request["request_id"]
        started = time.monotonic()
        outcome = Outcome()
        model = "unknown"
        stream = False
        try:
            self._check_key(request)
            body, payload = await self._read_json(request)
            self._validate(endpoint, payload)
            requested = payload.get("model")
            model = self.router.resolve(requested)
            stream = payload.get("stream") is True
            # The bytes go upstream as received, unless an alias changes the model name.
            if model != requested:
                payload["model"] = model
                body = json.dumps(payload).encode()
            call = Call(endpoint, str(requested), model, body, stream, request_id)
            assert self._forwarder is not None
            response = await self._forwarder.forward(request, call, outcome)
            outcome.status = response.status
            return response
        except GatewayError as exc:
            outcome.status = exc.status
            if not isinstance(exc, _PassThrough) and exc.status < 500:
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
                self.access_log.write(
                    request_id=request_id,
                    endpoint=endpoint,
                    model=model,
                    backend=outcome.backend,
                    status=outcome.status,
                    stream=stream,
                    attempts=outcome.attempts,
                    latency_ms=round(elapsed * 1000, 2),
                    trace=request.get("trace"),
                    error=outcome.error,
                )

    async def models(self, request: web.Request) -> web.Response:
        self._check_key(request)
        return web.Response(body=self._models_body, content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        body = {"status": "ok", "backends": [b.state() for b in self.backends]}
        return web.json_response(body)

    async def prometheus(self, request: web.Request) -> web.Response:
        self.metrics.refresh_backends(self.backends)
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def unmatched(self, request: web.Request) -> web.StreamResponse:
        """What no route serves: 405 on a known path, 404 elsewhere, both in OpenAI's shape."""
        allowed = self.route_methods.get(request.path)
        if allowed is not None:
            error = BadRequest(f"Use {allowed} for {request.path}", status=405, code="method_not_allowed")
            return error_response(error, {"Allow": allowed})
        raise NotFound(f"No such path: {request.path}", code="invalid_path")

    def answering_errors(self, handler: Handler) -> Handler:
        """Request id and trace in, every error out in OpenAI's shape.

        A wrapper per route rather than an aiohttp middleware: aiohttp assembles the middleware
        chain on every request, a cost `make bench` shows.
        """

        async def wrapped(request: web.Request) -> web.StreamResponse:
            incoming = request.headers.get("X-Request-Id")
            request_id = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(12).hex()
            request["request_id"] = request_id
            if self.settings.gcp_project:
                request["trace"] = _logging.trace_id(
                    request.headers.get("X-Cloud-Trace-Context"),
                    request.headers.get("traceparent"),
                    self.settings.gcp_project,
                )
            try:
                response = await handler(request)
            except _PassThrough as exc:
                response = exc.response
            except GatewayError as exc:
                response = error_response(exc)
            if not response.prepared:
                response.headers["X-Request-Id"] = request_id
            return response

        return wrapped


def create_app(settings: Settings) -> web.Application:
    """The gateway as an aiohttp application (start it with `GatewayRunner`)."""
    gateway = Gateway(settings)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app["gateway"] = gateway
    app.cleanup_ctx.append(gateway._lifespan)
    routes: list[tuple[str, str, Handler]] = [("POST", path, gateway.proxied) for path in ENDPOINTS]
    routes += [("GET", "/v1/models", gateway.models), ("GET", "/health", gateway.health)]
    if settings.metrics:
        routes.append(("GET", "/metrics", gateway.prometheus))
    for method, path, handler in routes:
        app.router.add_route(method, path, gateway.answering_errors(handler))
        gateway.route_methods[path] = method
    app.router.add_route("*", "/{tail:.*}", gateway.answering_errors(gateway.unmatched))
    return app
