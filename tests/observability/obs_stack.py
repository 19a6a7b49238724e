"""Real processes on loopback for the observability tests: llama-server (SmolLM2), the gateway
(`python -m model_gateway`), ai_exporter (the role's script) and Prometheus (Debian's package)
configured from observability/prometheus/prometheus-local.yml.j2. Each one is started, polled
until it answers, and stopped (SIGTERM, then SIGKILL) by its own process handle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import requests

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "observability/prometheus"
LLAMA_SERVER = Path(os.environ.get("LLAMA_SERVER_BIN_PATH", ROOT / "build/llama.cpp/bin/llama-server"))
SMOLLM2 = ROOT / "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"
EXPORTER = ROOT / "roles/ai_exporter/files/ai_exporter.py"
HTTP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    """A process serving HTTP on 127.0.0.1:port, ready once `ready_path` answers 200."""

    name: str
    argv: list[str]
    port: int
    ready_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> Process:
        self.log_path = log_dir / f"{self.name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"{self.name} not ready on {self.url} after {self.start_timeout}s: {self.log()[-2000:]}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def llama_server(api_key: str, alias: str) -> Process:
    port = free_port()
    argv = [
        str(LLAMA_SERVER),
        *("-m", str(SMOLLM2), "--alias", alias, "--host", "127.0.0.1", "--port", str(port)),
        *("-t", "1", "-c", "1024", "--parallel", "2", "--seed", "42", "--metrics", "--no-warmup"),
        *("--api-key", api_key),
    ]
    return Process("llama-server", argv, port)


def exporter(work: Path, llamacpp_url: str, api_key: str, model: str) -> Process:
    port = free_port()
    config = {
        "listen_address": "127.0.0.1",
        "port": port,
        "timeout_s": 2,
        "gpu": "off",
        "runtimes": [{"kind": "llamacpp", "url": llamacpp_url, "model": model, "api_key": api_key}],
    }
    path = work / "ai-exporter.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return Process("ai-exporter", [sys.executable, str(EXPORTER), str(path)], port, ready_path="/metrics")


def gateway(backends: list[dict[str, Any]], api_key: str) -> Process:
    port = free_port()
    env = {
        "PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_BACKENDS": json.dumps(backends),
        "GATEWAY_API_KEYS": api_key,
        "GATEWAY_PROBE_INTERVAL_S": "1",
        # A dead backend stays in rotation, so every request fails over from it (and counts it).
        "GATEWAY_BREAKER_FAILURES": "100000",
    }
    return Process("gateway", [sys.executable, "-m", "model_gateway"], port, env=env)


def render_local_config(work: Path, variables: dict[str, Any]) -> Path:
    """Render prometheus-local.yml.j2 as Ansible's template module does (trim_blocks) into `work`."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMETHEUS_DIR),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    # StrictUndefined: the template must default every variable itself.
    text = environment.get_template("prometheus-local.yml.j2").render(**variables)
    path = work / "prometheus.yml"
    path.write_text(text)
    return path


def prometheus(config: Path, data: Path) -> Process:
    port = free_port()
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    return Process("prometheus", argv, port, ready_path="/-/ready", start_timeout=30)


def query(prometheus_url: str, expr: str) -> dict[str, Any]:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=HTTP_TIMEOUT)
    return answer.json()


def wait_for(predicate: Callable[[], object], seconds: float, interval: float = 0.5) -> object:
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)
