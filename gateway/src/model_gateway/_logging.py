"""Structured JSON logs, one object a line, in the shape Cloud Logging reads from stdout.

`severity` and `logging.googleapis.com/trace` are Cloud Logging's special fields. Only the fields
listed in `_FIELDS` are ever written: no headers, no keys, no prompt or completion text.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_FIELDS = (
    "request_id",
    "trace",
    "backend",
    "model",
    "endpoint",
    "status",
    "latency_ms",
    "attempts",
    "error",
    "stream",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry["logging.googleapis.com/trace" if name == "trace" else name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would duplicate ours, unstructured.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def trace_id(header_cloud: str | None, header_w3c: str | None, project: str | None) -> str | None:
    """Cloud Logging's trace field from X-Cloud-Trace-Context or traceparent, when a project is known."""
    if project is None:
        return None
    trace = None
    if header_cloud:
        trace = header_cloud.split("/", 1)[0]
    elif header_w3c:
        parts = header_w3c.split("-")
        trace = parts[1] if len(parts) == 4 else None
    if not trace or not trace.isalnum() or len(trace) > 64:
        return None
    return f"projects/{project}/traces/{trace}"
