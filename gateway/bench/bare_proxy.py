"""Candidate stack for the benchmark: the thinnest aiohttp server + aiohttp client proxy.

It has no auth, routing, failover or metrics; it shows what the stack itself costs, so the
gateway's own overhead can be read off against it. Usage: bare_proxy.py PORT UPSTREAM asyncio|uvloop
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def lifespan(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app["session"].post(upstream + request.path, data=body) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status,
                headers={"Content-Type": upstream_response.headers.get("Content-Type", "application/json")},
            )
            try:
                await response.prepare(request)
                async for chunk in upstream_response.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # wrk closes its connections at the end of a run
            return response

    app.cleanup_ctx.append(lifespan)
    app.router.add_post("/{tail:.*}", proxy)
    return app


if __name__ == "__main__":
    port, upstream, loop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    runner = uvloop.run if loop == "uvloop" else asyncio.run

    async def serve() -> None:
        app_runner = web.AppRunner(make_app(upstream), access_log=None)
        await app_runner.setup()
        await web.TCPSite(app_runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    runner(serve())
