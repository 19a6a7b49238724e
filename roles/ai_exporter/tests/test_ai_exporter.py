"""The exporter against a real llama-server, and against scripted runtimes for the states a real
server cannot be held in on demand (still loading, Ollama's API, which cannot be had here).

Run by scripts/test-roles.sh before the Molecule scenarios (seconds). The real llama-server and
model are the ones `make setup` builds (LLAMA_SERVER_BIN_PATH overrides the binary).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROLE = Path(__file__).resolve().parent.parent
ROOT = ROLE.parent.parent
sys.path.insert(0, str(ROLE / "files"))

import ai_exporter  # noqa: E402

LLAMA_SERVER = Path(os.environ.get("LLAMA_SERVER_BIN_PATH", ROOT / "build/llama.cpp/bin/llama-server"))
MODEL = ROOT / "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached in {timeout_s} s")


class ScriptedRuntime:
    """An HTTP server answering fixed JSON per path; records the Authorization headers it saw."""

    def __init__(self, routes: dict[str, tuple[int, object]]) -> None:
        self.routes = routes
        self.authorizations: list[str | None] = []
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                runtime.authorizations.append(self.headers.get("Authorization"))
                status, body = runtime.routes.get(self.path, (404, {"error": "not found"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def scripted() -> Iterator:
    servers: list[ScriptedRuntime] = []

    def start(routes: dict[str, tuple[int, object]]) -> ScriptedRuntime:
        servers.append(ScriptedRuntime(routes))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """The real llama-server with SmolLM2 and an API key, as the llamacpp role runs it."""
    if not LLAMA_SERVER.exists() or not MODEL.exists():
        pytest.fail(f"{LLAMA_SERVER} or {MODEL} is missing: run make setup")
    port = free_port()
    process = subprocess.Popen(
        [str(LLAMA_SERVER), "--model", str(MODEL), "--alias", "SmolLM2-135M-Instruct", "--host", "127.0.0.1",
         "--port", str(port), "--ctx-size", "512", "--parallel", "1", "--threads", "1", "--api-key", "k-123",
         "--no-webui"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, "llama-server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, what="llama-server /health 200")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def scrape(
    config: ai_exporter.Config, nvml: ai_exporter.Nvml | None = None
) -> dict[tuple[str, tuple], float]:
    """One scrape through prometheus-client's registry: {(name, sorted labels): value}."""
    registry = CollectorRegistry()
    registry.register(ai_exporter.Collector(config, nvml))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def config_for(*runtimes: ai_exporter.Runtime) -> ai_exporter.Config:
    return ai_exporter.Config(listen_address="127.0.0.1", port=9101, timeout_s=1.0, runtimes=runtimes)


def loaded_key(backend: str, model: str) -> tuple[str, tuple]:
    return ("ai_model_loaded", (("backend", backend), ("model", model)))


def test_llamacpp_serving_model_is_reported_loaded_under_its_alias(llama_server: str) -> None:
    runtime = ai_exporter.Runtime(
        kind="llamacpp", url=llama_server, models=("configured-name",), api_key="k-123"
    )
    samples = scrape(config_for(runtime))
    assert samples[loaded_key("llamacpp", "SmolLM2-135M-Instruct")] == 1
    assert samples[("ai_runtime_up", (("backend", "llamacpp"),))] == 1


def test_llamacpp_without_the_key_still_reports_loaded_under_configured_name(llama_server: str) -> None:
    runtime = ai_exporter.Runtime(kind="llamacpp", url=llama_server, models=("configured-name",))
    samples = scrape(config_for(runtime))
    assert samples[loaded_key("llamacpp", "configured-name")] == 1


def test_llamacpp_still_loading_reports_model_not_loaded(scripted) -> None:
    server = scripted({"/health": (503, {"error": {"code": 503, "message": "Loading model"}})})
    runtime = ai_exporter.Runtime(kind="llamacpp", url=server.url, models=("m",))
    samples = scrape(config_for(runtime))
    assert samples[loaded_key("llamacpp", "m")] == 0
    assert samples[("ai_runtime_up", (("backend", "llamacpp"),))] == 1


def test_llamacpp_down_reports_runtime_down_and_model_not_loaded() -> None:
    runtime = ai_exporter.Runtime(kind="llamacpp", url=f"http://127.0.0.1:{free_port()}", models=("m",))
    samples = scrape(config_for(runtime))
    assert samples[loaded_key("llamacpp", "m")] == 0
    assert samples[("ai_runtime_up", (("backend", "llamacpp"),))] == 0


def test_llamacpp_props_is_asked_with_the_api_key(scripted) -> None:
    server = scripted({"/health": (200, {"status": "ok"}), "/props": (200, {"model_alias": "served"})})
    scrape(config_for(ai_exporter.Runtime(kind="llamacpp", url=server.url, api_key="secret")))
    assert server.authorizations == [None, "Bearer secret"]


def test_ollama_reports_loaded_pulled_and_expected_models(scripted) -> None:
    server = scripted(
        {
            "/api/ps": (200, {"models": [{"name": "qwen2.5:0.5b", "size_vram": 1}]}),
            "/api/tags": (200, {"models": [{"name": "qwen2.5:0.5b"}, {"name": "llama3.2:1b"}]}),
        }
    )
    runtime = ai_exporter.Runtime(kind="ollama", url=server.url, models=("gemma3:1b",))
    samples = scrape(config_for(runtime))
    assert samples[loaded_key("ollama", "qwen2.5:0.5b")] == 1
    assert samples[loaded_key("ollama", "llama3.2:1b")] == 0
    assert samples[loaded_key("ollama", "gemma3:1b")] == 0
    assert samples[("ai_runtime_up", (("backend", "ollama"),))] == 1


def test_host_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
    assert ai_exporter.host_memory(str(meminfo)) == [
        ai_exporter.Memory(device="host", used=600 * 1024, total=1000 * 1024)
    ]


def test_memory_without_gpu_is_the_hosts() -> None:
    samples = scrape(config_for())
    total = samples[("ai_memory_total_bytes", (("device", "host"),))]
    assert 0 < samples[("ai_memory_used_bytes", (("device", "host"),))] < total


def test_gpu_memory_comes_from_nvml_when_present() -> None:
    class FakeNvml:
        def memory(self) -> list[ai_exporter.Memory]:
            return [ai_exporter.Memory(device="gpu0", used=5, total=80)]

    samples = scrape(config_for(), nvml=FakeNvml())  # type: ignore[arg-type]
    assert samples[("ai_memory_used_bytes", (("device", "gpu0"),))] == 5
    assert ("ai_memory_total_bytes", (("device", "host"),)) not in samples


def test_nvml_is_absent_without_a_driver() -> None:
    if Path("/dev/nvidiactl").exists():
        pytest.skip("this machine has an NVIDIA driver")
    assert ai_exporter.Nvml.open() is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"port": 9101}, "missing key 'listen_address'"),
        (
            {"listen_address": "a", "port": 9101, "runtimes": [{"kind": "vllm", "url": "http://x"}]},
            "runtimes[0].kind",
        ),
        (
            {"listen_address": "a", "port": 9101, "runtimes": [{"kind": "ollama", "url": "x:1"}]},
            "runtimes[0].url",
        ),
        ({"listen_address": "a", "port": 70000}, "port must be 1-65535"),
        ({"listen_address": "a", "port": 1, "gpu": "yes"}, "gpu must be one of"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(config: dict, message: str) -> None:
    with pytest.raises(ai_exporter.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ai_exporter.parse_config(config)


def test_service_serves_metrics_over_http(tmp_path: Path, llama_server: str) -> None:
    port = free_port()
    config = tmp_path / "config.json"
    runtime = {"kind": "llamacpp", "url": llama_server, "model": "SmolLM2-135M-Instruct", "api_key": "k-123"}
    config.write_text(json.dumps({"listen_address": "127.0.0.1", "port": port, "runtimes": [runtime]}))
    process = subprocess.Popen([sys.executable, str(ROLE / "files/ai_exporter.py"), str(config)])
    try:

        def metrics() -> str | None:
            assert process.poll() is None, "the exporter exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return None

        wait_until(lambda: metrics() is not None, timeout_s=10, what="exporter /metrics")
        assert 'ai_model_loaded{backend="llamacpp",model="SmolLM2-135M-Instruct"} 1.0' in metrics()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_service_exits_with_a_message_on_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{not json")
    result = subprocess.run(
        [sys.executable, str(ROLE / "files/ai_exporter.py"), str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "is not JSON" in result.stderr
