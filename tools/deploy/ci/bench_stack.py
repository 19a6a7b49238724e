"""Benchmark of the whole local path against its last hop: the same short streamed chat through
the Worker (JWT, rate limit) -> gateway -> llama.cpp, and straight to llama.cpp, interleaved so
both see the same machine. Prints one JSON line per path with p50/p90 of the time to first token
and the total time, and the ratios whole/direct of the p50s.

    python tools/deploy/ci/bench_stack.py --requests 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import requests
from stack import Stack


def streamed(
    client: requests.Session, url: str, key: str, model: str, verify: str | bool = True
) -> tuple[float, float]:
    """Seconds to the first content chunk and to the end of one streamed chat."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": 16,
        "stream": True,
    }
    start = time.perf_counter()
    first = None
    with client.post(
        url,
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        stream=True,
        timeout=60,
        verify=verify,
    ) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines(decode_unicode=True):
            if first is None and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - start
    return (first if first is not None else float("nan")), time.perf_counter() - start


def quantiles(values: list[float]) -> dict[str, float]:
    cut = statistics.quantiles(values, n=10)
    return {"p50_ms": round(statistics.median(values) * 1000, 1), "p90_ms": round(cut[8] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    stack = Stack.load("local")
    run = uuid.uuid4().hex[:8]
    # Direct is llama.cpp's public port: its TLS proxy included, verified against the model CA.
    paths = {
        "direct llama.cpp": (
            f"{stack.url('llamacpp_url')}/v1/chat/completions",
            lambda i: stack.secret("llamacpp_api_key_file"),
            stack.model_ca_file,
        ),
        # A sub per request: the rate limit is not what is measured.
        "worker+gateway+llama.cpp": (
            f"{stack.url('worker_url')}/v1/chat/completions",
            lambda i: stack.token(f"bench-{run}-{i}"),
            True,
        ),
    }
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in paths}
    with requests.Session() as client:
        for url, key, verify in paths.values():  # warm-up: connections, the model's caches
            streamed(client, url, key(-1), stack.model, verify)
        for i in range(args.requests):
            for name, (url, key, verify) in paths.items():
                ttft, total = streamed(client, url, key(i), stack.model, verify)
                results[name][0].append(ttft)
                results[name][1].append(total)
    direct = results["direct llama.cpp"]
    for name, (ttft, total) in results.items():
        row = {"path": name, "requests": args.requests, "ttft": quantiles(ttft), "total": quantiles(total)}
        if name != "direct llama.cpp":
            row["ratio_ttft_p50"] = round(statistics.median(ttft) / statistics.median(direct[0]), 2)
            row["ratio_total_p50"] = round(statistics.median(total) / statistics.median(direct[1]), 2)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
