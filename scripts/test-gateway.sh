#!/usr/bin/env bash
# make test-gateway: the model gateway against real llama-servers (built from the pinned source)
# and fault-injecting upstreams; the load test; the container image built with podman.
# Arguments go to pytest, e.g. `scripts/test-gateway.sh -m "not image" -k failover`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT/gateway"
export LLAMA_SERVER_BIN_PATH="${LLAMA_SERVER_BIN_PATH:-$BUILD_DIR/llama.cpp/bin/llama-server}"
[ -x "$LLAMA_SERVER_BIN_PATH" ] || die "no llama-server at $LLAMA_SERVER_BIN_PATH: run make setup"
exec python -m pytest -p no:cacheprovider -q --durations=10 "$@"
