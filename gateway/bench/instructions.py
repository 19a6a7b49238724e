"""User-space instructions per proxied request, counted by valgrind's callgrind (not part of `make bench`).

CPU time on a shared machine moves with the neighbours' load; instruction counts repeat to about
0.2 %, so a change of a few percent can be measured. The target runs under
`valgrind --tool=callgrind` in front of the benchmark's nginx mock; after a warm-up the counters
are zeroed, REQUESTS requests go over 8 keep-alive connections, and the counters are dumped.

Usage: instructions.py [gateway|bare] [json|stream] [NAME=VALUE ...]
    gateway  `python -m model_gateway` with the benchmark's settings (NAME=VALUE adds to them)
    bare     `bare_stack.py`: the gateway's server and client with nothing else
A run takes about a minute. Needs valgrind (`apt-get install valgrind`).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import HERE, KEY, _free_port, _wait_port, gateway_env, start_mock

REQUESTS = 2000
WARM_UP = 400
CONNECTIONS = 8


async def _send(port: int, requests: int, stream: bool) -> None:
    """`requests` POSTs over CONNECTIONS keep-alive connections, each answer read to its end."""
    body = b'{"model": "bench", "stream": %s, "messages": [{"role": "user", "content": "Hi"}]}' % (
        b"true" if stream else b"false"
    )
    request = (
        (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n" + (b"X-Bench-Stream: 1\r\n" if stream else b"")
        )
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )

    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if not head.startswith(b"http/1.1 200"):
                raise SystemExit(f"the target answered {head[:40]!r}")
            if b"transfer-encoding: chunked" in head:
                while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                    await reader.readexactly(size + 2)
                await reader.readexactly(2)
            else:
                await reader.readexactly(int(head.split(b"content-length: ")[1].split(b"\r\n")[0]))
        writer.close()

    await asyncio.gather(*(one_connection(requests // CONNECTIONS) for _ in range(CONNECTIONS)))


def _instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no instruction total in {dump}")


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "gateway"
    stream = (sys.argv[2] if len(sys.argv) > 2 else "json") == "stream"
    extra = dict(arg.split("=", 1) for arg in sys.argv[3:])
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    mock_port, port = _free_port(), _free_port()
    mock = start_mock(workdir, mock_port)
    command = [sys.executable, "-m", "model_gateway"]
    if target == "bare":
        command = [sys.executable, str(HERE / "bare_stack.py"), str(port), f"http://127.0.0.1:{mock_port}"]
    out = workdir / "callgrind.out"
    valgrind = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
        env={**gateway_env(port, f"http://127.0.0.1:{mock_port}"), "GATEWAY_PROBE_INTERVAL_S": "0", **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, valgrind, timeout=120)  # under valgrind the start takes seconds
        asyncio.run(_send(port, WARM_UP, stream))
        subprocess.run(["callgrind_control", "--zero", str(valgrind.pid)], check=True, capture_output=True)
        asyncio.run(_send(port, REQUESTS, stream))
        subprocess.run(["callgrind_control", "--dump", str(valgrind.pid)], check=True, capture_output=True)
        dump = Path(f"{out}.1")
        while not dump.exists():
            time.sleep(0.2)
        time.sleep(0.5)  # let callgrind finish writing the dump
        mode = "stream" if stream else "json"
        label = " ".join([target, mode, *(f"{k}={v}" for k, v in extra.items())])
        print(f"{label}: {_instructions(dump) // REQUESTS:,} instructions/request")
    finally:
        valgrind.terminate()
        valgrind.wait(timeout=60)
        mock.terminate()
        mock.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
