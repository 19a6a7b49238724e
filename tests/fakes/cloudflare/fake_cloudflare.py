"""A fake of the part of the Cloudflare v4 API that deploys a Worker.

It keeps real state (scripts, settings, secrets, workers.dev, routes, custom domains), answers in
Cloudflare's envelope (`{"success", "errors", "messages", "result"}`), and validates what it is
sent the way the real API does for the fields we use: the multipart upload must carry a `metadata`
part whose `main_module` names an uploaded part of type `application/javascript+module`, each
binding must have a known type and that type's fields, and migrations must start from the
deployed tag. Anything it does not know is a 404 in the envelope, and every request is recorded,
so tests can compare our module's calls with the reference client's (wrangler).

Faults: `bad token` (401, code 10000), and `fail_next(status, count)` for 429/5xx injection.
Run standalone for manual use: `python fake_cloudflare.py --port 8787 --token T --account A`.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/client/v4"
MODULE_CONTENT_TYPES = {"application/javascript+module", "text/javascript+module"}
# Required fields of each binding type we accept (developers.cloudflare.com/workers/configuration/
# multipart-upload-metadata/#bindings). Other types exist; we never send them.
BINDING_FIELDS: dict[str, tuple[str, ...]] = {
    "plain_text": ("name", "text"),
    "secret_text": ("name", "text"),
    "json": ("name", "json"),
    "ratelimit": ("name", "namespace_id", "simple"),
    "durable_object_namespace": ("name", "class_name"),
}


@dataclass
class Recorded:
    """One request as the fake received it (multipart uploads parsed into parts)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Script:
    modules: dict[str, tuple[str, bytes]]
    metadata: dict[str, Any]
    etag: str
    migration_tag: str | None = None
    classes: set[str] = field(default_factory=set)
    secrets: dict[str, str] = field(default_factory=dict)
    workers_dev: bool = False


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FakeCloudflare:
    """State and behaviour; `serve()` puts it behind a real HTTP server on 127.0.0.1."""

    def __init__(self, token: str, account_id: str, subdomain: str = "canary-test"):
        self.token = token
        self.account_id = account_id
        self.subdomain = subdomain
        self.zones: set[str] = set()
        self.scripts: dict[str, Script] = {}
        self.routes: dict[str, list[dict[str, str]]] = {}
        self.domains: list[dict[str, str]] = []
        self.requests: list[Recorded] = []
        self.faults: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.routes_table = [
            ("GET", r"/user/tokens/verify", self.verify_token),
            ("GET", r"/accounts/{a}/workers/subdomain", self.account_subdomain),
            ("GET", r"/accounts/{a}/workers/services/(?P<name>[^/]+)", self.get_service),
            ("GET", r"/accounts/{a}/workers/scripts", self.list_scripts),
            ("PUT", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)", self.upload_script),
            ("DELETE", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)", self.delete_script),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/settings", self.get_settings),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/content/v2", self.get_content),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/secrets", self.list_secrets),
            ("PUT", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/secrets", self.put_secret),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/subdomain", self.get_script_subdomain),
            ("POST", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/subdomain", self.set_script_subdomain),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/schedules", self.get_schedules),
            ("PUT", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/schedules", self.get_schedules),
            ("GET", r"/accounts/{a}/workers/scripts/(?P<name>[^/]+)/deployments", self.list_deployments),
            ("GET", r"/zones/(?P<zone>[^/]+)/workers/routes", self.list_routes),
            ("POST", r"/zones/(?P<zone>[^/]+)/workers/routes", self.create_route),
            ("PUT", r"/zones/(?P<zone>[^/]+)/workers/routes/(?P<route_id>[^/]+)", self.update_route),
            ("DELETE", r"/zones/(?P<zone>[^/]+)/workers/routes/(?P<route_id>[^/]+)", self.delete_route),
            ("GET", r"/accounts/{a}/workers/domains", self.list_domains),
            ("PUT", r"/accounts/{a}/workers/domains", self.attach_domain),
            ("DELETE", r"/accounts/{a}/workers/domains/(?P<domain_id>[^/]+)", self.detach_domain),
        ]
        self.compiled = [
            (method, re.compile(pattern.replace("{a}", re.escape(account_id)) + "$"), handler)
            for method, pattern, handler in self.routes_table
        ]

    # ---- server plumbing ------------------------------------------------------------------

    def serve(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per answer: headers and body in separate segments would meet
            # the client's delayed ACK (40 ms a request).
            wbufsize = 1 << 16

            def log_message(self, *args: Any) -> None:  # the tests read self.requests instead
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, content_type, extra = fake.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}{API_PREFIX}"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def fail_next(self, status: int, count: int = 1, headers: dict[str, str] | None = None) -> None:
        """The next `count` requests get `status` (a 429 or 5xx) in Cloudflare's envelope."""
        self.faults.extend([(status, headers or {})] * count)

    def calls(self, method: str | None = None, path_pattern: str = "") -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and re.search(path_pattern, r.path)
        ]

    # ---- dispatch -------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str, dict[str, str]]:
        split = urlsplit(raw_path)
        path = split.path.removeprefix(API_PREFIX)
        record = Recorded(method, path, parse_qs(split.query), headers, body)
        with self.lock:
            self.requests.append(record)
            try:
                if headers.get("authorization") != f"Bearer {self.token}":
                    raise ApiError(401, 10000, "Authentication error")
                if self.faults:
                    status, extra = self.faults.pop(0)
                    return self._envelope(status, None, [(status * 10, "injected fault")], extra)
                for route_method, pattern, handler in self.compiled:
                    match = pattern.match(path)
                    if match and route_method == method:
                        result = handler(record, **match.groupdict())
                        if isinstance(result, bytes):
                            return 200, result, "application/javascript", {}
                        return self._envelope(200, result)
                raise ApiError(404, 7003, f"No route for that URI: {method} {path}")
            except ApiError as err:
                return self._envelope(err.status, None, [(err.code, err.message)])

    @staticmethod
    def _envelope(
        status: int,
        result: Any,
        errors: list[tuple[int, str]] | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, bytes, str, dict[str, str]]:
        body = {
            "success": not errors,
            "errors": [{"code": code, "message": message} for code, message in errors or []],
            "messages": [],
            "result": result,
        }
        return status, json.dumps(body).encode(), "application/json", extra or {}

    # ---- request parsing ------------------------------------------------------------------

    @staticmethod
    def _json(record: Recorded) -> Any:
        try:
            record.json = json.loads(record.body or b"null")
        except ValueError as err:
            raise ApiError(400, 10026, f"request body is not JSON: {err}") from err
        return record.json

    @staticmethod
    def _multipart(record: Recorded) -> dict[str, dict[str, Any]]:
        content_type = record.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, 10021, f"expected multipart/form-data, got {content_type!r}")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + record.body
        )
        parts: dict[str, dict[str, Any]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts[name] = {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "content": part.get_payload(decode=True),
            }
        record.parts = parts
        return parts

    def _script(self, name: str) -> Script:
        if name not in self.scripts:
            raise ApiError(404, 10007, "This Worker does not exist on your account.")
        return self.scripts[name]

    # ---- handlers -------------------------------------------------------------------------

    def verify_token(self, record: Recorded) -> Any:
        return {"id": "token-id", "status": "active"}

    def account_subdomain(self, record: Recorded) -> Any:
        return {"subdomain": self.subdomain}

    def get_service(self, record: Recorded, name: str) -> Any:
        if name not in self.scripts:
            raise ApiError(404, 10090, "workers.api.error.service_not_found")
        script = self.scripts[name]
        return {
            "id": name,
            "default_environment": {
                "environment": "production",
                "script": {"id": name, "etag": script.etag, "migration_tag": script.migration_tag},
            },
        }

    def list_scripts(self, record: Recorded) -> Any:
        return [{"id": n, "etag": s.etag, "migration_tag": s.migration_tag} for n, s in self.scripts.items()]

    def upload_script(self, record: Recorded, name: str) -> Any:
        parts = self._multipart(record)
        if "metadata" not in parts:
            raise ApiError(400, 10021, "missing the metadata part")
        try:
            metadata = json.loads(parts["metadata"]["content"])
        except ValueError as err:
            raise ApiError(400, 10021, f"metadata is not JSON: {err}") from err
        main = metadata.get("main_module")
        if not isinstance(main, str) or main not in parts:
            raise ApiError(400, 10021, f"main_module {main!r} names no uploaded part")
        modules = {
            part_name: (part["content_type"], part["content"])
            for part_name, part in parts.items()
            if part_name != "metadata"
        }
        if modules[main][0] not in MODULE_CONTENT_TYPES:
            raise ApiError(400, 10021, f"main module has content type {modules[main][0]!r}, not a JS module")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(metadata.get("compatibility_date", ""))):
            raise ApiError(400, 10021, "compatibility_date must be YYYY-MM-DD")
        previous = self.scripts.get(name)
        bindings = self._validate_bindings(metadata.get("bindings", []))
        # Secrets live apart from the other bindings (settings show their names only); an upload
        # without keep_bindings drops the bindings and secrets it does not carry, as the API does.
        secrets = {b["name"]: b["text"] for b in bindings if b["type"] == "secret_text"}
        bindings = [b for b in bindings if b["type"] != "secret_text"]
        kept = set(metadata.get("keep_bindings", []))
        if previous is not None:
            names = {b["name"] for b in bindings} | set(secrets)
            bindings += [
                b for b in previous.metadata["bindings"] if b["type"] in kept and b["name"] not in names
            ]
            if "secret_text" in kept:
                secrets = {**previous.secrets, **secrets}
        migration_tag, classes = self._apply_migrations(metadata.get("migrations"), previous, bindings)
        metadata = {**metadata, "bindings": bindings}
        etag = hashlib.sha256(record.body).hexdigest()
        script = Script(modules, metadata, etag, migration_tag, classes, secrets)
        if previous is not None:
            script.workers_dev = previous.workers_dev
        self.scripts[name] = script
        return {"id": name, "etag": etag, "migration_tag": migration_tag, "has_modules": True}

    @staticmethod
    def _validate_bindings(bindings: Any) -> list[dict[str, Any]]:
        if not isinstance(bindings, list):
            raise ApiError(400, 10021, "bindings must be a list")
        seen = set()
        for binding in bindings:
            kind = binding.get("type")
            if kind not in BINDING_FIELDS:
                raise ApiError(400, 10021, f"unknown binding type {kind!r}")
            missing = [f for f in BINDING_FIELDS[kind] if f not in binding]
            if missing:
                raise ApiError(400, 10021, f"binding {binding.get('name')!r} of type {kind} lacks {missing}")
            if kind == "ratelimit" and set(binding["simple"]) != {"limit", "period"}:
                raise ApiError(400, 10021, "ratelimit.simple needs exactly limit and period")
            if kind == "ratelimit" and binding["simple"]["period"] not in (10, 60):
                raise ApiError(400, 10021, "ratelimit period must be 10 or 60")
            if binding["name"] in seen:
                raise ApiError(400, 10021, f"binding name {binding['name']!r} used twice")
            seen.add(binding["name"])
        return [dict(b) for b in bindings]

    @staticmethod
    def _apply_migrations(
        migrations: Any, previous: Script | None, bindings: list[dict[str, Any]]
    ) -> tuple[str | None, set[str]]:
        """The migration tag and Durable Object classes after this upload, as the real API checks them."""
        deployed_tag = previous.migration_tag if previous else None
        classes = set(previous.classes) if previous else set()
        if migrations:
            if migrations.get("old_tag") != deployed_tag:
                raise ApiError(
                    400,
                    10079,
                    f"migration old_tag {migrations.get('old_tag')!r} is not the deployed {deployed_tag!r}",
                )
            steps = migrations.get("steps") or [migrations]
            for step in steps:
                for new in step.get("new_classes", []) + step.get("new_sqlite_classes", []):
                    if new in classes:
                        raise ApiError(400, 10074, f"class {new} already exists")
                    classes.add(new)
                for gone in step.get("deleted_classes", []):
                    classes.discard(gone)
            deployed_tag = migrations.get("new_tag")
        for binding in bindings:
            own_class = binding["type"] == "durable_object_namespace" and "script_name" not in binding
            if own_class and binding["class_name"] not in classes:
                raise ApiError(
                    400,
                    10061,
                    f"Cannot create binding for class {binding['class_name']} that is not exported "
                    "by a migration (new_classes / new_sqlite_classes)",
                )
        return deployed_tag, classes

    def delete_script(self, record: Recorded, name: str) -> Any:
        script = self._script(name)
        uses_do = any(b["type"] == "durable_object_namespace" for b in script.metadata["bindings"])
        if uses_do and record.query.get("force") != ["true"]:
            raise ApiError(400, 10064, "Worker has Durable Objects; delete with force=true")
        del self.scripts[name]
        return None

    def get_settings(self, record: Recorded, name: str) -> Any:
        script = self._script(name)
        bindings = [dict(b) for b in script.metadata["bindings"]]
        bindings += [{"name": secret, "type": "secret_text"} for secret in sorted(script.secrets)]
        return {
            "bindings": bindings,
            "compatibility_date": script.metadata["compatibility_date"],
            "compatibility_flags": script.metadata.get("compatibility_flags", []),
            "logpush": False,
            "tags": [],
        }

    def get_content(self, record: Recorded, name: str) -> bytes:
        script = self._script(name)
        return script.modules[script.metadata["main_module"]][1]

    def list_secrets(self, record: Recorded, name: str) -> Any:
        return [{"name": secret, "type": "secret_text"} for secret in sorted(self._script(name).secrets)]

    def put_secret(self, record: Recorded, name: str) -> Any:
        script = self._script(name)
        body = self._json(record)
        if not isinstance(body, dict) or body.get("type") != "secret_text" or not body.get("name"):
            raise ApiError(400, 10021, 'secret must be {"name", "text", "type": "secret_text"}')
        if not isinstance(body.get("text"), str):
            raise ApiError(400, 10021, "secret text must be a string")
        script.secrets[body["name"]] = body["text"]
        return {"name": body["name"], "type": "secret_text"}

    def get_script_subdomain(self, record: Recorded, name: str) -> Any:
        return {"enabled": self._script(name).workers_dev, "previews_enabled": False}

    def set_script_subdomain(self, record: Recorded, name: str) -> Any:
        script = self._script(name)
        body = self._json(record)
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise ApiError(400, 10021, 'expected {"enabled": bool}')
        script.workers_dev = body["enabled"]
        return {"enabled": script.workers_dev, "previews_enabled": False}

    def list_deployments(self, record: Recorded, name: str) -> Any:
        script = self._script(name)
        return {"deployments": [{"id": script.etag, "source": "api", "strategy": "percentage"}]}

    def get_schedules(self, record: Recorded, name: str) -> Any:
        self._script(name)
        return {"schedules": []}

    def _zone(self, zone: str) -> list[dict[str, str]]:
        if zone not in self.zones:
            raise ApiError(
                404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?"
            )
        return self.routes.setdefault(zone, [])

    def list_routes(self, record: Recorded, zone: str) -> Any:
        return list(self._zone(zone))

    def create_route(self, record: Recorded, zone: str) -> Any:
        routes = self._zone(zone)
        body = self._json(record)
        if not isinstance(body, dict) or not body.get("pattern"):
            raise ApiError(400, 10021, "route needs a pattern")
        if any(route["pattern"] == body["pattern"] for route in routes):
            raise ApiError(409, 10020, "A route with the same pattern already exists")
        route = {"id": uuid.uuid4().hex, "pattern": body["pattern"], "script": body.get("script", "")}
        routes.append(route)
        return route

    def update_route(self, record: Recorded, zone: str, route_id: str) -> Any:
        body = self._json(record)
        for route in self._zone(zone):
            if route["id"] == route_id:
                route.update(pattern=body["pattern"], script=body.get("script", ""))
                return route
        raise ApiError(404, 10005, "route not found")

    def delete_route(self, record: Recorded, zone: str, route_id: str) -> Any:
        routes = self._zone(zone)
        for route in routes:
            if route["id"] == route_id:
                routes.remove(route)
                return {"id": route_id}
        raise ApiError(404, 10005, "route not found")

    def list_domains(self, record: Recorded) -> Any:
        service = record.query.get("service", [None])[0]
        return [d for d in self.domains if service is None or d["service"] == service]

    def attach_domain(self, record: Recorded) -> Any:
        body = self._json(record)
        for required in ("hostname", "service", "zone_id"):
            if not isinstance(body, dict) or not body.get(required):
                raise ApiError(400, 10021, f"custom domain needs {required}")
        if body["zone_id"] not in self.zones:
            raise ApiError(404, 7003, "zone not found")
        self._script(body["service"])
        self.domains = [d for d in self.domains if d["hostname"] != body["hostname"]]
        domain = {
            "id": uuid.uuid4().hex,
            "hostname": body["hostname"],
            "service": body["service"],
            "zone_id": body["zone_id"],
            "environment": body.get("environment", "production"),
        }
        self.domains.append(domain)
        return domain

    def detach_domain(self, record: Recorded, domain_id: str) -> Any:
        before = len(self.domains)
        self.domains = [d for d in self.domains if d["id"] != domain_id]
        if len(self.domains) == before:
            raise ApiError(404, 100_114, "custom domain not found")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--zone", action="append", default=[])
    args = parser.parse_args()
    fake = FakeCloudflare(args.token, args.account)
    fake.zones.update(args.zone)
    print(fake.serve(), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
