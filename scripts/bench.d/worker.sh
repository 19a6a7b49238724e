#!/usr/bin/env bash
# The Worker's benchmark: files/worker.js (HS256 JWT + rate limit + proxy) against a pass-through
# Worker, both in workerd (Miniflare) before the same local upstream, requests interleaved, for
# RATE_LIMIT_MODE off, binding and do. One JSON line per mode with p50/p90 and their ratios.
# Goal: ratio_p50 <= 1.2. BENCH_REQUESTS (default 2000) sets the requests per Worker and mode.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
[ -d "$ROOT/tests/worker/node_modules/miniflare" ] || die "tests/worker/node_modules is missing: run make setup"
cd "$ROOT/tests/worker"
exec node bench/bench.js
