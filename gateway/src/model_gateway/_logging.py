"""Structured JSON logs, one object a line, in the shape Cloud Logging reads from stdout.

`severity` and `logging.googleapis.com/trace` are Cloud Logging's special fields. Only the fields
listed in `_FIELDS` are ever written: no headers, no keys, no prompt or completion text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _json_quote  # what json.dumps does for a str
from typing import TextIO

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


class _Clock:
    """RFC 3339 UTC timestamps with milliseconds, each distinct one formatted once.

    At thousands of requests a second most lines share their millisecond with the line before;
    formatting each one was a third of the cost of an access-log line (560 of 1,790 ns, timeit).
    """

    __slots__ = ("_millisecond", "_second", "_second_text", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._second_text = ""
        self._millisecond = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        millisecond = int(created * 1000)
        if millisecond != self._millisecond:
            second, fraction = divmod(millisecond, 1000)
            if second != self._second:
                self._second = second
                self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._millisecond = millisecond
            self._text = f"{self._second_text}.{fraction:03d}Z"
        return self._text


timestamp = _Clock()


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": timestamp(record.created),
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


# The access line's fixed part, filled with %-formatting: a generic json.dumps of a dict cost
# about three times as much (measured with `make bench`). Strings go in through `_json_string`.
_REQUEST_LINE = (
    '{"severity": "INFO", "message": "request", "time": "%s", "request_id": %s, "endpoint": %s, '
    '"model": %s, "backend": %s, "status": %d, "stream": %s, "attempts": %d, "latency_ms": %.2f'
)
_QUOTED_MAX = 1024


class AccessLog:
    """One JSON line per request, written in batches.

    At thousands of requests a second, a LogRecord, a handler lock and a write per line cost more
    than the proxying itself (measured with `make bench`); here a line is one string formatting,
    and the lines reach stdout every `interval` seconds, at `max_lines`, and at shutdown.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.2, max_lines: int = 512) -> None:
        self._stream = stream
        self._interval = interval
        self._max_lines = max_lines
        self._lines: list[str] = []
        # JSON-quoted endpoint, model and backend names: a few, from the configuration.
        self._quoted: dict[str, str] = {}

    def _json_string(self, value: str) -> str:
        quoted = self._quoted.get(value)
        if quoted is None:
            quoted = json.dumps(value)
            if len(self._quoted) < _QUOTED_MAX:
                self._quoted[value] = quoted
        return quoted

    def write(
        self,
        *,
        request_id: str,
        endpoint: str,
        model: str,
        backend: str,
        status: int,
        stream: bool,
        attempts: int,
        latency_ms: float,
        trace: str | None = None,
        error: str | None = None,
    ) -> None:
        """Queue one request's line; `trace` and `error` appear only when there are any."""
        quote = self._json_string
        line = _REQUEST_LINE % (
            timestamp(time.time()),
            _json_quote(request_id),
            quote(endpoint),
            quote(model),
            quote(backend),
            status,
            "true" if stream else "false",
            attempts,
            latency_ms,
        )
        if trace is not None:
            line += ', "logging.googleapis.com/trace": ' + _json_quote(trace)
        if error is not None:
            line += ', "error": ' + _json_quote(error)
        self._lines.append(line + "}")
        if len(self._lines) >= self._max_lines:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            stream = self._stream or sys.stdout
            stream.write("\n".join(self._lines) + "\n")
            stream.flush()
            self._lines.clear()

    async def run(self) -> None:
        """Flush periodically until cancelled; the caller flushes once more at shutdown."""
        while True:
            await asyncio.sleep(self._interval)
            self.flush()
