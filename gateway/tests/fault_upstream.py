"""A fault-injecting OpenAI-compatible upstream, run as its own process by the fixtures.

It speaks just enough of llama.cpp's and Ollama's APIs (`/health`, `/v1/models`, `/api/ps`,
`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`) for the gateway, and misbehaves on
request. Tests steer it over HTTP:

    POST /_control  {"mode": "...", ...}   set the behaviour of the next requests (forgets earlier ones)
    GET  /_requests                        what it received (path, headers, body) since

Modes: ok, status (any status, optional Retry-After), stall (no answer for `seconds`),
slow_first_byte (headers now, first chunk after `seconds`), cut_after (stream `chunks`, then drop
the connection), no_done (stream `chunks`, end cleanly without [DONE]), flap (fail, ok, fail, ...).
With `close_idle_after` (seconds) it closes each connection that long after answering.
Usage: python fault_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web

CHUNKS = 20


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def _chunk(model: str, index: int) -> bytes:
    delta = {"role": "assistant", "content": ""} if index == 0 else {"content": f"t{index} "}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage_chunk(model: str) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": CHUNKS, "total_tokens": 7 + CHUNKS},
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class FaultUpstream:
    def __init__(self) -> None:
        self.control: dict[str, Any] = {"mode": "ok"}
        self.requests: list[dict[str, Any]] = []
        self.flap_count = 0

    async def set_control(self, request: web.Request) -> web.Response:
        self.control = await request.json()
        self.flap_count = 0
        self.requests.clear()
        return web.json_response(self.control)

    async def get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def health(self, request: web.Request) -> web.Response:
        if self.control.get("probe") == "down":
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "meta": {"size": 1234}}]})

    async def ps(self, request: web.Request) -> web.Response:
        loaded = self.control.get("loaded", [])
        return web.json_response(
            {"models": [{"name": m, "model": m, "size": 2000, "size_vram": 1500} for m in loaded]}
        )

    async def generate(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            {
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": raw.decode(),
            }
        )
        payload = json.loads(raw)
        model = payload.get("model", "fake")
        mode = self.control["mode"]
        if mode == "flap":
            self.flap_count += 1
            mode = "status" if self.flap_count % 2 == 1 else "ok"
            self.control.setdefault("status", 500)
        if mode == "status":
            headers = {}
            if "retry_after" in self.control:
                headers["Retry-After"] = str(self.control["retry_after"])
            error = {"error": {"message": f"fake {self.control['status']}", "type": "fake", "code": None}}
            return web.json_response(error, status=self.control["status"], headers=headers)
        if mode == "stall":
            await asyncio.sleep(self.control["seconds"])
        if request.path == "/v1/embeddings":
            return web.json_response(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                    "model": model,
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                }
            )
        if "close_idle_after" in self.control and request.transport is not None:
            # Like a server with a short keep-alive timeout: the idle connection is closed under the client.
            asyncio.get_running_loop().call_later(self.control["close_idle_after"], request.transport.close)
        if not payload.get("stream"):
            return web.json_response(_completion(model, "hello from fake"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if mode == "slow_first_byte":
            await asyncio.sleep(self.control["seconds"])
        chunks = self.control.get("chunks", CHUNKS)
        for index in range(chunks):
            await response.write(_chunk(model, index))
            if self.control.get("chunk_delay"):
                await asyncio.sleep(self.control["chunk_delay"])
        if mode == "cut_after":
            assert request.transport is not None
            request.transport.abort()  # a hard cut: no terminating chunk
            return response
        if mode != "no_done":
            await response.write(_usage_chunk(model))
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def make_app() -> web.Application:
    upstream = FaultUpstream()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/_control", upstream.set_control)
    app.router.add_get("/_requests", upstream.get_requests)
    app.router.add_get("/health", upstream.health)
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_get("/api/ps", upstream.ps)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, upstream.generate)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
