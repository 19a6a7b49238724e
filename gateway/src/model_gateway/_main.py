"""`model-gateway` / `python -m model_gateway`: parse settings, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from aiohttp import web

from . import _logging
from ._app import GatewayRunner, create_app
from ._config import ConfigError, Settings, load_settings

log = logging.getLogger("model_gateway")
# Cloud Run allows 10 s between SIGTERM and SIGKILL: finish what is in flight within that.
SHUTDOWN_TIMEOUT_S = 8.0


async def serve(settings: Settings) -> None:
    runner = GatewayRunner(create_app(settings), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "serving",
        extra={
            "endpoint": f"http://{settings.host}:{settings.port}",
            "backend": [b.name for b in settings.backends],
        },
    )
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _logging.configure("INFO")
        log.critical(f"refusing to start: {exc}")
        sys.exit(2)
    _logging.configure(settings.log_level)
    uvloop.run(serve(settings))
