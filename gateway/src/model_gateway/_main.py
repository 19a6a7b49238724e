"""`model-gateway` / `python -m model_gateway`: parse settings, serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from . import _logging
from ._app import Gateway
from ._config import ConfigError, Settings, load_settings
from ._errors import error_body
from ._http import Server

log = logging.getLogger("model_gateway")
# Cloud Run allows 10 s between SIGTERM and SIGKILL: finish what is in flight within that.
SHUTDOWN_TIMEOUT_S = 8.0


async def serve(settings: Settings) -> None:
    gateway = Gateway(settings)
    server = Server(
        gateway.handle,
        error_body,
        max_body_bytes=settings.max_body_bytes,
        max_head_bytes=settings.max_head_bytes,
        max_headers=settings.max_headers,
        max_pipelined=settings.max_pipelined,
        head_check=gateway.check_head,
        keep_alive_timeout=settings.client_keep_alive,
    )
    gateway.start()
    await server.start(settings.host, settings.port)
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
    await server.close(SHUTDOWN_TIMEOUT_S)
    await gateway.stop()


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _logging.configure("INFO")
        log.critical(f"refusing to start: {exc}")
        sys.exit(2)
    _logging.configure(settings.log_level)
    uvloop.run(serve(settings))
