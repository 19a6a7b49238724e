"""Load: 200 concurrent streams while a backend dies, connection hygiene, and memory over 5,000 requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from utils import API_KEY, backend, metric_value, wait_for

pytestmark = pytest.mark.load

BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def _established(port: int, side: str) -> int:
    """TCP connections in state ESTABLISHED whose local (or remote) port is `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            address = local if side == "local" else remote
            if state == "01" and int(address.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _stream(session: aiohttp.ClientSession, url: str) -> str:
    """One streamed request: 'ok' (complete, [DONE]), 'cut' (error event after data) or 'failed'."""
    try:
        async with session.post(url, json={**BODY, "stream": True}, headers=HEADERS) as response:
            if response.status != 200:
                return "failed"
            text = (await response.read()).decode()
    except aiohttp.ClientError:
        return "failed"
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    if events and events[-1] == "[DONE]":
        return "ok"
    if events and "error" in json.loads(events[-1]) and len(events) > 1:
        return "cut"  # it had started streaming: the explicit error is the right answer
    return "failed"


def test_200_concurrent_streams_survive_a_backend_killed_halfway(start_gateway, upstream, upstream2):
    for fake in (upstream, upstream2):
        fake.set("ok", chunks=10, chunk_delay=0.03)
    # The contract's settings alone (max_concurrency 64 a backend): the 72 requests beyond the
    # 128 slots, and all beyond 64 once "a" dies, wait in the backends' pending queues.
    gateway = start_gateway([backend("a", upstream.url, ["m"]), backend("b", upstream2.url, ["m"])])
    url = gateway.url + "/v1/chat/completions"
    total, concurrency = 1000, 200

    async def run() -> list[str]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            gate = asyncio.Semaphore(concurrency)
            done = 0

            async def one() -> str:
                nonlocal done
                async with gate:
                    result = await _stream(session, url)
                done += 1
                if done == total // 2:
                    upstream.kill()  # SIGKILL backend "a" halfway through
                return result

            return await asyncio.gather(*(one() for _ in range(total)))

    results = asyncio.run(run())
    started_streaming = results.count("cut")
    not_started = total - started_streaming
    success = results.count("ok") / not_started
    print(f"ok={results.count('ok')} cut={started_streaming} failed={results.count('failed')}")
    assert upstream.proc is not None and upstream.proc.returncode is not None, "backend a was not killed"
    assert success >= 0.995, f"{results.count('failed')} of {not_started} unstarted requests failed"
    served = gateway.metrics()
    assert metric_value(served, "ai_request_latency_seconds_count", backend="a", status_class="2xx") > 0
    assert metric_value(served, "ai_request_latency_seconds_count", backend="b", status_class="2xx") > 0
    wait_for(lambda: _established(gateway.port, "local") == 0, seconds=10)


def test_memory_stays_flat_over_5000_requests(start_gateway, upstream):
    gateway = start_gateway(
        [backend("a", upstream.url, ["m"], max_concurrency=200)], GATEWAY_ACCESS_LOG="false"
    )
    url = gateway.url + "/v1/chat/completions"
    assert gateway.proc is not None

    async def batch(count: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

            async def one(index: int) -> None:
                body = {**BODY, "stream": index % 2 == 0}
                async with session.post(url, json=body, headers=HEADERS) as response:
                    assert response.status == 200
                    await response.read()

            await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(batch(500))  # warm-up: pools, caches, metric children
    before = _rss_bytes(gateway.proc.pid)
    asyncio.run(batch(5000))
    growth = _rss_bytes(gateway.proc.pid) - before
    print(f"RSS {before / 1e6:.1f} MB before, grew {growth / 1e6:.2f} MB over 5,000 requests")
    assert growth < 20 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"
    wait_for(lambda: _established(gateway.port, "local") == 0, seconds=10)
