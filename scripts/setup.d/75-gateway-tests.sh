#!/usr/bin/env bash
# The gateway's test and benchmark tools: nginx and wrk, and the tiny test model.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
apt_ensure nginx wrk
model="$BUILD_DIR/models/llm-canary-tiny.gguf"
[ -f "$model" ] || "$VENV/bin/python" "$ROOT/gateway/tests/tiny_model.py" "$model"
