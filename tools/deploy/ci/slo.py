"""The canary's SLO verdict: N short requests through the whole path (client -> Worker ->
gateway -> backend), against the seed's objectives: availability >= 99.5 %, p95 latency < 2 s.

    python tools/deploy/ci/slo.py --requests 50 --out outputs/canary/slo.json

Writes the figures and the verdict of each objective as JSON; exits 0 when both are met.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from gateway_target import GatewayTarget
from stack import Stack

AVAILABILITY_OBJECTIVE = 0.995
P95_OBJECTIVE_S = 2.0


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (the smallest value with at least `fraction` of all at or below)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def measure(stack: Stack, count: int, concurrency: int) -> dict[str, object]:
    url = f"{stack.url('worker_url')}/v1/chat/completions"
    run = uuid.uuid4().hex[:8]
    body = {"model": stack.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}

    def one(index: int) -> tuple[bool, float, str]:
        # A sub per request: the verdict measures the service, not the per-client rate limit.
        headers = {"Authorization": f"Bearer {stack.token(f'canary-slo-{run}-{index}')}"}
        start = time.monotonic()
        try:
            answer = requests.post(url, json=body, headers=headers, timeout=30.0)
            ok = answer.status_code == 200 and bool(
                answer.json()["choices"][0]["message"]["content"] is not None
            )
            why = "" if ok else f"HTTP {answer.status_code}"
        except (requests.RequestException, ValueError, KeyError, IndexError) as error:
            ok, why = False, type(error).__name__
        return ok, time.monotonic() - start, why

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(count)))
    latencies = [elapsed for _, elapsed, _ in results]
    good = sum(ok for ok, _, _ in results)
    availability = good / count
    p95 = percentile(latencies, 0.95)
    return {
        "requests": count,
        "succeeded": good,
        "failures": sorted({why for ok, _, why in results if not ok}),
        "availability": availability,
        "availability_objective": AVAILABILITY_OBJECTIVE,
        "availability_met": availability >= AVAILABILITY_OBJECTIVE,
        "p95_s": p95,
        "p95_objective_s": P95_OBJECTIVE_S,
        "p95_met": p95 < P95_OBJECTIVE_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--target", default=None)
    parser.add_argument(
        "--gateway", action="store_true", help="measure CANARY_GATEWAY_URL directly (a Cloud Run revision)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    stack = GatewayTarget.from_env() if args.gateway else Stack.load(args.target)
    figures = measure(stack, args.requests, args.concurrency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["availability_met"] and figures["p95_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
