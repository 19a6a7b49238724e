#!/usr/bin/env python3
"""A stand-in for the Ollama binary, for hosts that cannot download the real one.

It is packed by ``pack.sh`` into an archive shaped like Ollama's release archive
(``bin/ollama``, ``lib/ollama/``) and installed by the ``ollama`` role through its production
code path. It implements the part of Ollama that the role, the exporter and operators use:

* ``ollama serve`` with Ollama's environment (``OLLAMA_HOST``, ``OLLAMA_MODELS``,
  ``OLLAMA_KEEP_ALIVE``, ``OLLAMA_NUM_PARALLEL``, ``OLLAMA_MAX_LOADED_MODELS``,
  ``CUDA_VISIBLE_DEVICES``), serving ``GET /``, ``GET /api/version``, ``GET /api/tags``, ``GET /v1/models``,
  ``POST /api/pull``, ``GET /api/ps`` and ``POST /api/generate`` without a prompt (load or
  unload a model, as Ollama does);
* ``ollama list`` (a client of that server, as in Ollama's runbooks) and ``ollama --version``.

Where Ollama would only log a bad setting and fall back to its default, the stand-in refuses
to start, so that a role sending a malformed value fails its tests. Pulled models are stored
the way Ollama stores them (``manifests/registry.ollama.ai/library/NAME/TAG`` and
``blobs/sha256-HEX``); the "registry" is ``lib/ollama/standin-registry.json`` in the archive:
pulling a name that is not listed there fails as a pull of an unknown model does. No model is
ever run: ``/api/generate`` with a prompt is refused.

Device discovery is Ollama's as far as the role and the host checks see it: shortly after the API
answers, the server logs one ``msg="inference compute"`` line per device in Ollama's format
(``discover/types.go``): a CUDA GPU when ``/dev/nvidiactl`` and ``/dev/nvidia0`` can be seen in
its sandbox and ``CUDA_VISIBLE_DEVICES`` does not hide them, else ``id=cpu library=cpu``. A test
makes a GPU host by creating those two paths; ``/api/ps`` then reports loaded models in VRAM.

Standard library only, so it runs on a bare Debian host with ``python3``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LIB_DIR = Path(__file__).resolve().parent.parent / "lib" / "ollama"
# pack.sh writes the version the stand-in reports, as a release archive carries its own.
VERSION = (LIB_DIR / "standin-version").read_text().strip()
DEFAULT_PORT = 11434
REGISTRY_HOST = "registry.ollama.ai"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(:[A-Za-z0-9._-]+)?$")


class ConfigError(ValueError):
    """A setting in the environment that Ollama would not run with as intended."""


def parse_duration(text: str, variable: str) -> float | None:
    """Seconds for a Go duration or a plain number of seconds; None means "forever" (negative)."""
    value = text.strip()
    if re.fullmatch(r"-?\d+", value):
        seconds = float(value)
    else:
        negative = value.startswith("-")
        body = value.lstrip("-")
        parts = _DURATION_PART.findall(body)
        if not body or "".join(n + u for n, u in parts) != body:
            raise ConfigError(f"{variable}={text!r} is not a duration (e.g. 5m, 1h30m, 300, -1)")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts) * (-1 if negative else 1)
    return None if seconds < 0 else seconds


def parse_host(text: str) -> tuple[str, int]:
    """Ollama's OLLAMA_HOST: ``[scheme://]host[:port]``; the port defaults to 11434."""
    value = re.sub(r"^https?://", "", text.strip()).rstrip("/")
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host:
        raise ConfigError(f"OLLAMA_HOST={text!r} has no host")
    if port and not port.isdigit():
        raise ConfigError(f"OLLAMA_HOST={text!r} has a port that is not a number")
    return host, int(port or DEFAULT_PORT)


def parse_count(env: dict[str, str], variable: str, default: int) -> int:
    text = env.get(variable, "")
    if text == "":
        return default
    if not text.isdigit():
        raise ConfigError(f"{variable}={text!r} is not a non-negative integer")
    return int(text)


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings, read once from the environment."""

    host: str
    port: int
    models_dir: Path
    keep_alive_s: float | None
    num_parallel: int
    max_loaded_models: int
    hide_gpus: bool

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ServeConfig:
        host, port = parse_host(env.get("OLLAMA_HOST", f"127.0.0.1:{DEFAULT_PORT}"))
        models = Path(env.get("OLLAMA_MODELS") or Path(env.get("HOME", "/")) / ".ollama" / "models")
        if not models.is_absolute():
            raise ConfigError(f"OLLAMA_MODELS={str(models)!r} is not an absolute path")
        return cls(
            host=host,
            port=port,
            models_dir=models,
            keep_alive_s=parse_duration(env.get("OLLAMA_KEEP_ALIVE", "5m"), "OLLAMA_KEEP_ALIVE"),
            num_parallel=parse_count(env, "OLLAMA_NUM_PARALLEL", 1),
            max_loaded_models=parse_count(env, "OLLAMA_MAX_LOADED_MODELS", 3),
            hide_gpus=env.get("CUDA_VISIBLE_DEVICES") == "-1",
        )


# What the stand-in looks for where Ollama loads libcuda: the control and first device nodes.
GPU_DEVICES = (Path("/dev/nvidiactl"), Path("/dev/nvidia0"))
GPU_MEMORY = 80 * 2**30


def discover_gpu(config: ServeConfig) -> bool:
    return not config.hide_gpus and all(p.exists() for p in GPU_DEVICES)


def compute_log_line(gpu: bool) -> str:
    """Ollama's startup line for the device it will use (discover/types.go, LogDetails)."""
    if gpu:
        return (
            'level=INFO source=types.go:42 msg="inference compute" '
            'id=GPU-00000000-0000-0000-0000-000000000000 filter_id="" library=CUDA compute=9.0 '
            'name=CUDA0 description="Ollama stand-in GPU" '
            'libdirs=ollama,cuda_v13 driver=13.0 pci_id=0000:00:04.0 type=discrete total="80.0 GiB" '
            'available="79.5 GiB"'
        )
    return (
        'level=INFO source=types.go:60 msg="inference compute" id=cpu library=cpu compute="" name=cpu '
        'description=cpu libdirs=ollama driver="" pci_id="" type="" total="4.0 GiB" available="3.5 GiB"'
    )


def log_discovery(gpu: bool, delay_s: float = 1.0) -> None:
    """Ollama discovers devices after it listens: the API answers before these lines exist."""
    time.sleep(delay_s)
    print('level=INFO source=runner.go:80 msg="discovering available GPUs..."', file=sys.stderr)
    print(compute_log_line(gpu), file=sys.stderr, flush=True)


def normalise(name: str) -> str:
    """``smollm2`` → ``smollm2:latest``; Ollama's short names default to the ``latest`` tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class Loaded:
    name: str
    expires_at: float | None


@dataclass
class ModelStore:
    """Pulled models on disk, in Ollama's layout, and the models loaded in memory."""

    root: Path
    registry: dict[str, dict[str, Any]]
    loaded: dict[str, Loaded] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def manifest_path(self, name: str) -> Path:
        repo, tag = normalise(name).rsplit(":", 1)
        namespace, _, model = repo.rpartition("/")
        return self.root / "manifests" / REGISTRY_HOST / (namespace or "library") / model / tag

    def pull(self, name: str) -> None:
        full = normalise(name)
        if full not in self.registry:
            raise LookupError("pull model manifest: file does not exist")
        blob = json.dumps({"standin_model": full, **self.registry[full]}, sort_keys=True).encode()
        digest = hashlib.sha256(blob).hexdigest()
        blobs = self.root / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        (blobs / f"sha256-{digest}").write_bytes(blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}],
        }
        path = self.manifest_path(full)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))

    def pulled(self) -> list[str]:
        base = self.root / "manifests" / REGISTRY_HOST
        if not base.is_dir():
            return []
        names = []
        for tag in sorted(p for p in base.glob("*/*/*") if p.is_file()):
            namespace, model = tag.parent.parent.name, tag.parent.name
            names.append(
                f"{model}:{tag.name}" if namespace == "library" else f"{namespace}/{model}:{tag.name}"
            )
        return names

    def describe(self, name: str) -> dict[str, Any]:
        entry = self.registry[name]
        path = self.manifest_path(name)
        manifest = path.read_bytes()
        return {
            "name": name,
            "model": name,
            "modified_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
            "size": entry["size"],
            "digest": hashlib.sha256(manifest).hexdigest(),
            "details": {
                "format": "gguf",
                "family": entry["family"],
                "parameter_size": entry["parameter_size"],
                "quantization_level": entry["quantization_level"],
            },
        }

    def load(self, name: str, keep_alive_s: float | None, max_loaded: int) -> None:
        with self.lock:
            self._expire()
            if keep_alive_s == 0:
                self.loaded.pop(name, None)
                return
            self.loaded[name] = Loaded(name, None if keep_alive_s is None else time.time() + keep_alive_s)
            while max_loaded and len(self.loaded) > max_loaded:
                self.loaded.pop(next(iter(self.loaded)))

    def running(self) -> list[Loaded]:
        with self.lock:
            self._expire()
            return list(self.loaded.values())

    def _expire(self) -> None:
        now = time.time()
        for name in [n for n, m in self.loaded.items() if m.expires_at is not None and m.expires_at <= now]:
            del self.loaded[name]


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-standin"
    config: ServeConfig
    store: ModelStore
    gpu: bool = False

    def do_HEAD(self) -> None:
        self._send(HTTPStatus.OK, b"", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        routes = {
            "/": self._root,
            "/api/version": self._version,
            "/api/tags": self._tags,
            "/api/ps": self._ps,
            "/v1/models": self._openai_models,
        }
        route = routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"404 page not found: {self.path}"})
        else:
            route()

    def do_POST(self) -> None:
        routes = {"/api/pull": self._pull, "/api/generate": self._generate}
        route = routes.get(self.path)
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"404 page not found: {self.path}"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"invalid JSON body: {exc}"})
            return
        if not isinstance(body, dict):
            self._json(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
            return
        route(body)

    def _root(self) -> None:
        self._send(HTTPStatus.OK, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self) -> None:
        self._json(HTTPStatus.OK, {"version": VERSION})

    def _tags(self) -> None:
        self._json(HTTPStatus.OK, {"models": [self.store.describe(n) for n in self.store.pulled()]})

    def _openai_models(self) -> None:
        """The OpenAI-compatible list Ollama serves beside its own API."""
        data = [{"id": n, "object": "model", "owned_by": "library"} for n in self.store.pulled()]
        self._json(HTTPStatus.OK, {"object": "list", "data": data})

    def _ps(self) -> None:
        models = []
        for loaded in self.store.running():
            described = self.store.describe(loaded.name)
            expires = datetime.max.replace(tzinfo=UTC) if loaded.expires_at is None else None
            expires = expires or datetime.fromtimestamp(loaded.expires_at or 0, UTC)
            described.pop("modified_at")
            models.append(
                {
                    **described,
                    "expires_at": expires.isoformat(),
                    # Ollama offloads the whole model when it fits in the GPU's memory.
                    "size_vram": described["size"] if self.gpu and described["size"] <= GPU_MEMORY else 0,
                    "context_length": 4096,
                }
            )
        self._json(HTTPStatus.OK, {"models": models})

    def _pull(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "model is required"})
            return
        if not _NAME.match(name):
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"invalid model name: {name!r}"})
            return
        stream = body.get("stream", True) is not False
        try:
            self.store.pull(name)
        except LookupError as exc:
            if stream:
                self._ndjson([{"status": "pulling manifest"}, {"error": str(exc)}])
            else:
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
            return
        self.log_message("pulled %s", normalise(name))
        if stream:
            steps = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
            self._ndjson([{"status": s} for s in steps])
        else:
            self._json(HTTPStatus.OK, {"status": "success"})

    def _generate(self, body: dict[str, Any]) -> None:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "model is required"})
            return
        if body.get("prompt"):
            self._json(
                HTTPStatus.NOT_IMPLEMENTED, {"error": "the Ollama stand-in loads models; it never runs one"}
            )
            return
        full = normalise(name)
        if full not in self.store.pulled():
            self._json(HTTPStatus.NOT_FOUND, {"error": f"model '{name}' not found"})
            return
        keep_alive = self.config.keep_alive_s
        if "keep_alive" in body:
            try:
                keep_alive = parse_duration(str(body["keep_alive"]), "keep_alive")
            except ConfigError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
        self.store.load(full, keep_alive, self.config.max_loaded_models)
        reason = "unload" if keep_alive == 0 else "load"
        now = datetime.now(UTC).isoformat()
        self._json(
            HTTPStatus.OK,
            {"model": full, "created_at": now, "response": "", "done": True, "done_reason": reason},
        )

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _ndjson(self, lines: list[dict[str, Any]]) -> None:
        body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self._send(HTTPStatus.OK, body, "application/x-ndjson")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[GIN] {self.address_string()} | {format % args}\n")


def serve(env: dict[str, str]) -> int:
    try:
        config = ServeConfig.from_env(env)
        config.models_dir.mkdir(parents=True, exist_ok=True)
        probe = config.models_dir / ".standin-write-test"
        probe.write_text("")
        probe.unlink()
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"Error: models directory {env.get('OLLAMA_MODELS', '')!r} is not writable: {exc}",
            file=sys.stderr,
        )
        return 1
    registry = json.loads((LIB_DIR / "standin-registry.json").read_text())
    Handler.config = config
    Handler.store = ModelStore(config.models_dir, registry)
    Handler.gpu = discover_gpu(config)
    settings = {
        k: v for k, v in sorted(env.items()) if k.startswith("OLLAMA_") or k == "CUDA_VISIBLE_DEVICES"
    }
    print(f'level=INFO msg="server config" env="{settings}"', file=sys.stderr)
    httpd = ThreadingHTTPServer((config.host, config.port), Handler)
    print(
        f'level=INFO msg="Listening on {config.host}:{config.port} (version {VERSION})"',
        file=sys.stderr,
        flush=True,
    )
    threading.Thread(target=log_discovery, args=(Handler.gpu,), daemon=True).start()
    httpd.serve_forever()
    return 0


def client_url(env: dict[str, str], path: str) -> str:
    host, port = parse_host(env.get("OLLAMA_HOST") or f"127.0.0.1:{DEFAULT_PORT}")
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}{path}"


def list_models(env: dict[str, str]) -> int:
    with urllib.request.urlopen(client_url(env, "/api/tags"), timeout=10) as response:
        models = json.load(response)["models"]
    print(f"{'NAME':<40}{'ID':<16}{'SIZE':<12}MODIFIED")
    for model in models:
        size = f"{model['size'] / 1e6:.0f} MB"
        print(f"{model['name']:<40}{model['digest'][:12]:<16}{size:<12}{model['modified_at']}")
    return 0


def main(argv: list[str], env: dict[str, str]) -> int:
    match argv:
        case ["serve"]:
            return serve(env)
        case ["-v" | "--version"]:
            print(f"ollama version is {VERSION}")
            return 0
        case ["list" | "ls"]:
            command = partial(list_models, env)
        case _:
            print("usage: ollama serve | list | --version", file=sys.stderr)
            return 2
    try:
        return command()
    except (urllib.error.URLError, ConnectionError) as exc:
        print(
            f"Error: could not connect to ollama server, run 'ollama serve' to start it ({exc})",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dict(os.environ)))
