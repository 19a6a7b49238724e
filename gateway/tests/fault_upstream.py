"""A fault-injecting OpenAI-compatible upstream, run as its own process by the fixtures.

It speaks just enough of llama.cpp's and Ollama's APIs (`/health`, `/props`, `/slots`,
`/v1/models`, `/api/ps`, `/api/tags`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`)
for the gateway, in the shapes llama-server b11312 and Ollama's API docs give, and misbehaves on
request. Tests steer it over HTTP:

    POST /_control  {"mode": "...", ...}   set the behaviour of the next requests (forgets earlier ones)
    GET  /_requests                        the generation requests it received (path, headers, body) since
    GET  /_probes                          how often each probe path was read since

Modes: ok, status (any status, optional Retry-After), stall (no answer for `seconds`),
slow_first_byte (headers now, first chunk after `seconds`), cut_after (stream `chunks`, then drop
the connection), no_done (stream `chunks`, end cleanly without [DONE]), flap (fail, ok, fail, ...).
With `close_idle_after` (seconds) it closes each connection that long after answering. Sizes:
`chunk_bytes` pads each streamed chunk's content to about that many bytes, `answer_bytes` the
content of a non-streamed answer (both for memory bounds: a firehose, a huge answer).
What the probes see: `probe: "down"` (/health 503); llama.cpp `sleeping` (/props is_sleeping; a
/slots read wakes it, as llama-server's does), `busy_slots` of `total_slots` (2), `aliases` (as
--alias: /v1/models id and aliases; without, the id is the model path, "fake"), `model_ids`
(several /v1/models entries, as an OpenAI-compatible server lists them); Ollama `loaded`
(/api/ps) and `available` (/api/tags; defaults to `loaded`).
Usage: python fault_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aiohttp import web

CHUNKS = 20
# The model path a llama-server started with `-m fake` reports (its /v1/models id without --alias).
MODEL_PATH = "fake"


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def _chunk(model: str, index: int, pad: int = 0) -> bytes:
    delta = {"role": "assistant", "content": ""} if index == 0 else {"content": f"t{index} " + "x" * pad}
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
        self.probes: dict[str, int] = {}
        self.flap_count = 0

    async def set_control(self, request: web.Request) -> web.Response:
        self.control = await request.json()
        self.flap_count = 0
        self.requests.clear()
        self.probes.clear()
        return web.json_response(self.control)

    async def get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def get_probes(self, request: web.Request) -> web.Response:
        return web.json_response(self.probes)

    def _probed(self, request: web.Request) -> None:
        self.probes[request.path] = self.probes.get(request.path, 0) + 1

    async def health(self, request: web.Request) -> web.Response:
        self._probed(request)
        if self.control.get("probe") == "down":
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"status": "ok"})

    async def props(self, request: web.Request) -> web.Response:
        self._probed(request)
        aliases = self.control.get("aliases", [])
        return web.json_response(
            {
                "default_generation_settings": {"n_ctx": 512},
                "total_slots": self.control.get("total_slots", 2),
                "model_alias": aliases[0] if aliases else MODEL_PATH,
                "model_path": MODEL_PATH,
                "endpoint_slots": True,
                "build_info": "b11312-fake",
                "is_sleeping": self.control.get("sleeping", False),
            }
        )

    async def slots(self, request: web.Request) -> web.Response:
        self._probed(request)
        self.control["sleeping"] = False  # a task for llama-server's queue: it wakes up to answer
        busy = self.control.get("busy_slots", 0)
        return web.json_response(
            [
                {"id": i, "n_ctx": 512, "speculative": False, "is_processing": i < busy}
                for i in range(self.control.get("total_slots", 2))
            ]
        )

    async def models(self, request: web.Request) -> web.Response:
        self._probed(request)
        meta = {"n_ctx_train": 512, "n_params": 131392, "size": 1234}
        aliases = self.control.get("aliases", [])
        ids = self.control.get("model_ids", [aliases[0] if aliases else MODEL_PATH])
        data = [
            {"id": i, "aliases": aliases, "object": "model", "owned_by": "llamacpp", "meta": meta}
            for i in ids
        ]
        return web.json_response({"object": "list", "data": data})

    def _ollama_model(self, name: str) -> dict[str, Any]:
        details = {"format": "gguf", "family": "fake", "parameter_size": "1B", "quantization_level": "Q4_0"}
        return {"name": name, "model": name, "digest": "0" * 64, "details": details}

    async def ps(self, request: web.Request) -> web.Response:
        self._probed(request)
        loaded = self.control.get("loaded", [])
        return web.json_response(
            {"models": [{**self._ollama_model(m), "size": 2000, "size_vram": 1500} for m in loaded]}
        )

    async def tags(self, request: web.Request) -> web.Response:
        self._probed(request)
        available = self.control.get("available", self.control.get("loaded", []))
        return web.json_response(
            {
                "models": [
                    {**self._ollama_model(m), "modified_at": "2026-11-27T00:00:00Z", "size": 1800}
                    for m in available
                ]
            }
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
            text = "x" * self.control["answer_bytes"] if "answer_bytes" in self.control else "hello from fake"
            return web.json_response(_completion(model, text))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if mode == "slow_first_byte":
            await asyncio.sleep(self.control["seconds"])
        chunks = self.control.get("chunks", CHUNKS)
        for index in range(chunks):
            await response.write(_chunk(model, index, self.control.get("chunk_bytes", 0)))
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
    app.router.add_get("/_probes", upstream.get_probes)
    app.router.add_get("/health", upstream.health)
    app.router.add_get("/props", upstream.props)
    app.router.add_get("/slots", upstream.slots)
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_get("/api/ps", upstream.ps)
    app.router.add_get("/api/tags", upstream.tags)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        app.router.add_post(path, upstream.generate)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
