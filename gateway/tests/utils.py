"""Test helpers: real processes (llama-server, the gateway, the fault upstream) started and stopped.

Like llama.cpp's tools/server/tests/utils.py: each server is a typed object whose `start()`
launches the real binary, polls its health URL, fails fast if the process died and times out
with a clear error; `stop()` terminates, then kills.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
LLAMA_SERVER = Path(os.environ.get("LLAMA_SERVER_BIN_PATH", ROOT / "build/llama.cpp/bin/llama-server"))
SMOLLM2 = ROOT / "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL = ROOT / "build/models/llm-canary-tiny.gguf"
API_KEY = "test-key-0123456789"
# Every HTTP call a test makes has a deadline, so a hung server fails its test instead of CI.
HTTP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A process serving HTTP on 127.0.0.1:port, ready once `health_path` answers 200."""

    argv: list[str]
    port: int
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 30.0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> ServerProcess:
        self.log_path = log_dir / f"{Path(self.argv[0]).name}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[0]} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.argv[0]} not healthy on {self.url} after {self.start_timeout}s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL: the process dies without closing anything cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


def llama_server(model: Path, *extra: str) -> ServerProcess:
    port = free_port()
    argv = [
        str(LLAMA_SERVER),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        "1",
        "-c",
        "2048",
        "--seed",
        "42",
        "--metrics",
        "--no-warmup",
        *extra,
    ]
    return ServerProcess(argv, port, start_timeout=60)


class FaultUpstream(ServerProcess):
    """tests/fault_upstream.py in its own process, steered over HTTP."""

    def __init__(self) -> None:
        port = free_port()
        super().__init__([sys.executable, str(TESTS / "fault_upstream.py"), str(port)], port)

    def set(self, mode: str = "ok", **params: Any) -> None:
        requests.post(
            self.url + "/_control", json={"mode": mode, **params}, timeout=HTTP_TIMEOUT
        ).raise_for_status()

    def received(self) -> list[dict[str, Any]]:
        return requests.get(self.url + "/_requests", timeout=HTTP_TIMEOUT).json()


def backend(name: str, url: str, models: list[str], kind: str = "llamacpp", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "kind": kind, "models": models, **extra}


class Gateway(ServerProcess):
    """The gateway as users start it: `python -m model_gateway` with settings in the environment."""

    def __init__(self, backends: list[dict[str, Any]], **settings: str) -> None:
        port = free_port()
        env = {
            "PORT": str(port),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_BACKENDS": json.dumps(backends),
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_PROBE_INTERVAL_S": "0",
            **settings,
        }
        super().__init__([sys.executable, "-m", "model_gateway"], port, env=env)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.post(self.url + path, json=body, headers=headers, timeout=HTTP_TIMEOUT, **kwargs)

    def chat(
        self, model: str = "m", stream: bool = False, headers: dict[str, str] | None = None, **extra: Any
    ) -> requests.Response:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hi"}],
            "stream": stream,
            **extra,
        }
        return self.post("/v1/chat/completions", body, stream=stream, headers=headers or {})

    def health(self) -> dict[str, Any]:
        response = requests.get(self.url + "/health", timeout=HTTP_TIMEOUT)
        assert response.status_code == 200
        return response.json()

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=HTTP_TIMEOUT).text

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]


def sse_events(response: requests.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order."""
    text = response.content.decode()
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample, 0 when absent (a counter that never moved)."""
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


def wait_for(predicate: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll until `predicate()` is true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {seconds}s: {predicate}")
