"""Candidate stack for the benchmark: the gateway's own HTTP server and upstream client, and nothing else.

No auth, validation, routing, breaker, metrics or log: what `_http.Server` + `_upstream.Pool` cost
per proxied request, so the gateway's own work can be read off against it.
Usage: bare_stack.py PORT UPSTREAM
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from model_gateway._errors import error_body
from model_gateway._http import Request, Response, Server
from model_gateway._upstream import Pool


async def serve(port: int, upstream: str) -> None:
    pool = Pool(upstream, connect_timeout=3.0)

    async def proxy(request: Request) -> Response | None:
        answer = await pool.request("POST", request.path, "Content-Type: application/json\r\n", request.body)
        content_type = answer.headers.get("content-type", "application/json")
        if not content_type.startswith("text/event-stream"):
            return Response(answer.status, await answer.read(), {"Content-Type": content_type})
        stream = request.start_stream(answer.status, {"Content-Type": content_type})
        while chunk := await answer.readany():
            await stream.write(chunk)
        stream.end()
        return None

    server = Server(proxy, error_body, max_body_bytes=4 * 1024 * 1024)
    await server.start("127.0.0.1", port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))
