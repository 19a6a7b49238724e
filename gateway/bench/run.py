"""`make bench` for the gateway: direct vs nginx proxy_pass vs candidate stacks vs the gateway.

Candidate stacks: a bare aiohttp proxy (server and client) on asyncio and on uvloop, and the
gateway's own server and client with nothing else (`bare_stack.py`).

Upstream: nginx serving fixed OpenAI answers (a chat completion, and a 20-event SSE stream).
Each proxy is pinned to CPU 0; the mock upstream and wrk share CPU 1. Every number is measured in
this run, and the overhead is read against "direct" from the same run. On a shared machine the
wall-clock numbers swing with the neighbours' load; "cpu us/req" (the proxy's own CPU time per
request, from /proc) barely does, and 1e6 / it is the rate one core would serve.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "5"))
CONNECTIONS = (1, 64)
KEY = "bench-key"
PROXY_CPU, LOAD_CPU = "0", "1"
STREAM_EVENTS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def _completion() -> str:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there!"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        }
    )


def _stream() -> str:
    events = []
    for i in range(STREAM_EVENTS):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "bench",
            "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
        }
        events.append("data: " + json.dumps(chunk) + "\n\n")
    return "".join(events) + "data: [DONE]\n\n"


def _nginx_conf(workdir: Path, name: str, server: str, upstream: str = "") -> Path:
    """One single-worker nginx: the mock upstream, or the proxy_pass hop (the floor for one hop)."""
    conf = f"""
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir};
  proxy_temp_path {workdir};
  {upstream}
  server {{
    {server}
  }}
}}
"""
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    return path


def _start_nginx(
    workdir: Path, cpu: str, port: int, name: str, server: str, upstream: str = ""
) -> subprocess.Popen[bytes]:
    conf = _nginx_conf(workdir, name, f"listen 127.0.0.1:{port};\n    {server}", upstream)
    proc = subprocess.Popen(["taskset", "-c", cpu, "nginx", "-c", str(conf), "-g", "daemon off;"])
    _wait_port(port, proc)
    return proc


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float = float("nan")  # the proxy's CPU time per request (robust on a shared machine)


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNIT[m.group(2)]


def _wrk(url: str, connections: int, stream: bool, workdir: Path) -> Result:
    body = json.dumps(
        {
            "model": "bench-stream" if stream else "bench",
            "stream": stream,
            "messages": [{"role": "user", "content": "Say hello"}],
        }
    )
    script = workdir / f"post-{int(stream)}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        + ('wrk.headers["X-Bench-Stream"] = "1"\n' if stream else "")
    )
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{DURATION_S}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+([\d.]+(?:us|ms|s))", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+([\d.]+(?:us|ms|s))", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return Result(rps, p50, p99, errors, requests)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process and of its live children (nginx's worker is the master's child)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    total = 0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_mock(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """The mock upstream on LOAD_CPU: a fixed chat completion, or the SSE stream with X-Bench-Stream."""
    (workdir / "completion.json").write_text(_completion())
    (workdir / "stream.sse").write_text(_stream())
    server = f"""
    location = /v1/chat/completions {{
      if ($http_x_bench_stream) {{ rewrite ^ /stream last; }}
      default_type application/json; alias {workdir}/completion.json;
    }}
    location = /stream {{ internal; default_type text/event-stream; alias {workdir}/stream.sse; }}
    error_page 405 =200 $uri;"""
    return _start_nginx(workdir, LOAD_CPU, port, "mock", server)


def gateway_env(port: int, mock: str) -> dict[str, str]:
    """The gateway's settings for the benchmark: one `openai` backend, the mock; key KEY."""
    backends = [{"name": "mock", "url": mock, "kind": "openai", "models": ["bench", "bench-stream"]}]
    return {
        **os.environ,
        "PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_BACKENDS": json.dumps(backends),
        "GATEWAY_API_KEYS": KEY,
        "GATEWAY_PROBE_INTERVAL_S": "15",
    }


def main() -> None:
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run `make setup`")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    mock_port, pass_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_mock(workdir, mock_port))
        pass_server = """location / { proxy_pass http://mock; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; }"""
        upstream = f"upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 128; }}"
        procs.append(_start_nginx(workdir, PROXY_CPU, pass_port, "proxy", pass_server, upstream))
        mock = f"http://127.0.0.1:{mock_port}"
        targets: dict[str, tuple[str, int | None]] = {
            "direct": (mock, None),
            "nginx proxy_pass": (f"http://127.0.0.1:{pass_port}", procs[-1].pid),
        }
        for loop in ("asyncio", "uvloop"):
            port = _free_port()
            proc = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    PROXY_CPU,
                    sys.executable,
                    str(HERE / "bare_proxy.py"),
                    str(port),
                    mock,
                    loop,
                ]
            )
            procs.append(proc)
            _wait_port(port, proc)
            targets[f"bare aiohttp+{loop}"] = (f"http://127.0.0.1:{port}", proc.pid)
        port = _free_port()
        proc = subprocess.Popen(
            ["taskset", "-c", PROXY_CPU, sys.executable, str(HERE / "bare_stack.py"), str(port), mock]
        )
        procs.append(proc)
        _wait_port(port, proc)
        targets["bare gateway stack"] = (f"http://127.0.0.1:{port}", proc.pid)
        port = _free_port()
        env = gateway_env(port, mock)
        started = time.monotonic()
        gateway = subprocess.Popen(
            ["taskset", "-c", PROXY_CPU, sys.executable, "-m", "model_gateway"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        procs.append(gateway)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if gateway.poll() is not None or time.monotonic() - started > 30:
                    raise SystemExit("the gateway did not start") from None
                time.sleep(0.01)
        print(f"gateway: process start to /health 200 in {time.monotonic() - started:.2f}s")
        targets["gateway"] = (f"http://127.0.0.1:{port}", gateway.pid)

        results: dict[tuple[str, bool, int], Result] = {}
        for stream in (False, True):
            for connections in CONNECTIONS:
                for name, (url, pid) in targets.items():
                    before = _cpu_ticks(pid) if pid else 0
                    result = _wrk(url + "/v1/chat/completions", connections, stream, workdir)
                    if pid:
                        ticks = _cpu_ticks(pid) - before
                        result.cpu_us = ticks * 1e6 / os.sysconf("SC_CLK_TCK") / max(1, result.requests)
                    results[(name, stream, connections)] = result
        print(
            f"\n{'target':<22} {'mode':<10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'+p50 ms':>8} {'+p99 ms':>8} {'cpu us/req':>10} {'req/s/core':>10} {'errors':>6}"
        )
        for (name, stream, connections), r in results.items():
            base = results[("direct", stream, connections)]
            mode = "stream" if stream else "json"
            added_p50, added_p99 = r.p50_ms - base.p50_ms, r.p99_ms - base.p99_ms
            print(
                f"{name:<22} {mode:<10} {connections:>5} {r.rps:>9.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
                f"{added_p50:>8.3f} {added_p99:>8.3f} {r.cpu_us:>10.1f} {1e6 / r.cpu_us:>10.0f} {r.errors:>6}"
            )
        print()
        for name, (_url, pid) in targets.items():
            if pid is not None:
                print(f"RSS after the run, {name}: {_rss_mb(pid):.1f} MB")
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
