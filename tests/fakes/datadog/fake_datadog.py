"""A fake of the part of the Datadog v1 API that manages monitors.

It keeps real state (monitors by id) and answers the way Datadog does for the calls that
community.general.datadog_monitor makes through the `datadog` library: `GET /api/v1/monitor`
(a list), `GET|PUT|DELETE /api/v1/monitor/{id}`, `POST /api/v1/monitor`. It validates what it is
sent as Datadog does for the monitors we keep (observability/datadog/monitors.yaml):

- both keys, `DD-API-KEY` and `DD-APPLICATION-KEY`, else 403 `{"errors": ["Forbidden"]}`;
- a known `type`, a `name`, `options` an object, `tags` strings, `priority` 1-5;
- a query alert's query is `TIME_AGG(last_N):EXPR COMPARATOR THRESHOLD`, each metric in EXPR
  `SPACE_AGG:metric.name{tags}` (optionally ` by {tags}`, `.as_count()`), a `percentile` time
  aggregation only over a `pNN` space aggregation, and `options.thresholds.critical` equal to the
  query's threshold, a warning threshold (if any) on the safe side of it;
- a service check's query is `"check".over(...).by(...).last(N).count_by_status()` with
  `thresholds.critical` at most N;
- a composite's query combines ids of existing monitors with && and ||.

Errors are 400 `{"errors": [...]}`. Every request is recorded (keys replaced by whether they were
right), so tests can check what the module sent. Run standalone for manual use:
`python fake_datadog.py --port 8126 --api-key K --app-key A`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MONITOR_TYPES = {
    "metric alert",
    "service check",
    "event alert",
    "event-v2 alert",
    "process alert",
    "log alert",
    "query alert",
    "trace-analytics alert",
    "rum alert",
    "composite",
}
_QUERY = re.compile(
    r"^(?P<time_agg>avg|max|min|sum|percentile)\((?P<window>last_[0-9]+[mhdw])\):"
    r"(?P<expr>.+?)\s*(?P<cmp>>=|<=|>|<)\s*(?P<threshold>-?[0-9]+(\.[0-9]+)?)$"
)
_METRIC = re.compile(
    r"(?P<space_agg>avg|max|min|sum|p[0-9]{1,2}(\.[0-9]+)?):(?P<name>[a-z][a-z0-9_.]*)"
    r"\{(?P<tags>[^{}]*)\}(?: by \{(?P<by>[^{}]*)\})?(?P<suffix>\.as_count\(\)|\.as_rate\(\))?"
)
_SERVICE_CHECK = re.compile(
    r'^"(?P<check>[a-z][a-z0-9_.]*)"\.over\((?P<over>"[^"]*"(?:,\s*"[^"]*")*)\)'
    r'(?:\.by\((?P<by>"[^"]*"(?:,\s*"[^"]*")*)\))?\.last\((?P<last>[0-9]+)\)\.count_by_status\(\)$'
)
_COMPOSITE = re.compile(r"^\s*[0-9]+(\s*(&&|\|\|)\s*[0-9]+)+\s*$")
STORED_FIELDS = ("name", "type", "query", "message", "tags", "options", "priority")
_TAG = re.compile(r"^[a-z][a-z0-9_./-]*(:[^\s,]*)?$")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    api_key_ok: bool
    app_key_ok: bool
    body: Any


class ApiError(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = list(errors)


def _validate_query_alert(query: str, options: dict[str, Any]) -> list[str]:
    match = _QUERY.match(query)
    if not match:
        return [f"The value provided for parameter 'query' is invalid: {query!r}"]
    errors = []
    expr = match["expr"]
    metrics = list(_METRIC.finditer(expr))
    rest = _METRIC.sub("", expr)
    if not metrics or not re.fullmatch(r"[\s()+\-*/0-9.]*", rest):
        errors.append(f"The value provided for parameter 'query' is invalid: cannot parse {expr!r}")
    for metric in metrics:
        for tag in filter(None, (t.strip() for t in metric["tags"].split(","))):
            if tag != "*" and not _TAG.match(tag.lstrip("!")):
                errors.append(f"invalid tag {tag!r} in {metric.group(0)!r}")
        percentile = metric["space_agg"].startswith("p")
        if percentile != (match["time_agg"] == "percentile"):
            errors.append(f"a percentile time aggregation needs a pNN space aggregation: {query!r}")
    thresholds = options.get("thresholds") or {}
    critical = thresholds.get("critical")
    if critical is None:
        errors.append("Alert threshold (critical) is required in options.thresholds")
    elif float(critical) != float(match["threshold"]):
        errors.append(
            f"Alert threshold ({critical}) does not match that used in the query ({match['threshold']})"
        )
    warning = thresholds.get("warning")
    if warning is not None and critical is not None:
        above = match["cmp"] in (">", ">=")
        if (above and float(warning) >= float(critical)) or (not above and float(warning) <= float(critical)):
            errors.append(f"Warning threshold ({warning}) must be on the safe side of critical ({critical})")
    return errors


def _validate_service_check(query: str, options: dict[str, Any]) -> list[str]:
    match = _SERVICE_CHECK.match(query)
    if not match:
        return [f"The value provided for parameter 'query' is invalid: {query!r}"]
    thresholds = options.get("thresholds") or {}
    last = int(match["last"])
    errors = []
    for status in ("ok", "warning", "critical"):
        value = thresholds.get(status)
        if value is not None and not 1 <= int(value) <= last:
            errors.append(f"thresholds.{status} must be between 1 and {last} (the query's last({last}))")
    return errors


class FakeDatadog:
    def __init__(self, api_key: str, app_key: str) -> None:
        self.api_key = api_key
        self.app_key = app_key
        self.monitors: dict[int, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- state ---------------------------------------------------------------------------------
    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.monitors.values()}

    def _validate(self, body: Any, creating: bool) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        errors = []
        kind = body.get("type")
        if creating and kind not in MONITOR_TYPES:
            errors.append(f"Invalid monitor type {kind!r}")
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            errors.append("The value provided for parameter 'name' is invalid")
        if not isinstance(body.get("query"), str) or not body["query"].strip():
            errors.append("The value provided for parameter 'query' is invalid")
        options = body.get("options", {})
        if not isinstance(options, dict):
            errors.append("options must be an object")
            options = {}
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
            errors.append(f"tags must be a list of key:value strings, got {tags!r}")
        priority = body.get("priority")
        if priority is not None and (not isinstance(priority, int) or not 1 <= priority <= 5):
            errors.append(f"priority must be an integer from 1 to 5, got {priority!r}")
        if errors:
            raise ApiError(400, *errors)
        query = body["query"]
        if kind in ("query alert", "metric alert"):
            errors += _validate_query_alert(query, options)
        elif kind == "service check":
            errors += _validate_service_check(query, options)
        elif kind == "composite":
            if not _COMPOSITE.match(query):
                errors.append(f"A composite query combines monitor ids with && and ||, got {query!r}")
            else:
                for ref in map(int, re.findall(r"[0-9]+", query)):
                    if ref not in self.monitors:
                        errors.append(f"Composite monitor references a monitor that does not exist: {ref}")
        if errors:
            raise ApiError(400, *errors)

    def _stored(self, monitor_id: int, body: dict[str, Any], previous: dict[str, Any] | None) -> dict:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
        monitor = dict(previous or {})
        monitor.update({k: v for k, v in body.items() if k in STORED_FIELDS})
        monitor.setdefault("tags", [])
        monitor.setdefault("options", {})
        monitor.update(
            id=monitor_id,
            created=(previous or {}).get("created", now),
            modified=now,
            creator={"email": "fake@example.test", "handle": "fake", "name": "Fake"},
            overall_state="No Data",
            overall_state_modified=None,
            matching_downtimes=[],
            deleted=None,
        )
        return monitor

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.rstrip("/").split("/")
        if parts[:4] != ["", "api", "v1", "monitor"] or len(parts) > 5:
            raise ApiError(404, f"Not found: {method} {path}")
        monitor_id = None
        if len(parts) == 5:
            if not parts[4].isdigit():
                raise ApiError(404, f"Not found: {method} {path}")
            monitor_id = int(parts[4])
            if monitor_id not in self.monitors:
                raise ApiError(404, "Monitor not found")
        if monitor_id is None and method == "GET":
            return 200, sorted(self.monitors.values(), key=lambda m: m["id"])
        if monitor_id is None and method == "POST":
            self._validate(body, creating=True)
            self._next_id += 1
            self.monitors[self._next_id] = self._stored(self._next_id, body, None)
            return 200, self.monitors[self._next_id]
        if monitor_id is not None and method == "GET":
            return 200, self.monitors[monitor_id]
        if monitor_id is not None and method == "PUT":
            previous = self.monitors[monitor_id]
            if "type" in body and body["type"] not in (None, previous["type"]):
                raise ApiError(400, "The type of a monitor cannot be changed")
            self._validate({"type": previous["type"], **body}, creating=False)
            self.monitors[monitor_id] = self._stored(monitor_id, body, previous)
            return 200, self.monitors[monitor_id]
        if monitor_id is not None and method == "DELETE":
            del self.monitors[monitor_id]
            return 200, {"deleted_monitor_id": monitor_id}
        raise ApiError(405, f"Method not allowed: {method} {path}")

    # -- HTTP ----------------------------------------------------------------------------------
    def serve(self, port: int = 0) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                api_ok = self.headers.get("DD-API-KEY") == fake.api_key
                app_ok = self.headers.get("DD-APPLICATION-KEY") == fake.app_key
                with fake._lock:
                    fake.requests.append(
                        Recorded(self.command, url.path, parse_qs(url.query), api_ok, app_ok, body)
                    )
                    try:
                        if not (api_ok and app_ok):
                            raise ApiError(403, "Forbidden")
                        if isinstance(body, str):
                            raise ApiError(400, "The request body is not JSON")
                        status, answer = fake.handle(self.command, url.path, body)
                    except ApiError as error:
                        status, answer = error.status, {"errors": error.errors}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Datadog monitors API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--app-key", required=True)
    args = parser.parse_args()
    fake = FakeDatadog(args.api_key, args.app_key)
    print(fake.serve(args.port), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
