#!/usr/bin/env bash
# The whole local path, Worker -> gateway -> llama.cpp, against llama.cpp called directly: time to
# first token and total time of the same short streamed chat, requests interleaved. Brings the
# local target up first (site.yml -e target=local: a minute when it is already up).
# BENCH_STACK_REQUESTS (default 40) sets the requests per path.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$ROOT"
log "bench: the local target (site.yml -e target=local)"
ansible-playbook site.yml -e target=local >"$BUILD_DIR/bench-stack-up.log" 2>&1 \
  || { tail -30 "$BUILD_DIR/bench-stack-up.log"; die "the local target did not come up (log: $BUILD_DIR/bench-stack-up.log)"; }
exec python tools/deploy/ci/bench_stack.py --requests "${BENCH_STACK_REQUESTS:-40}"
