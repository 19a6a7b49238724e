#!/usr/bin/env bash
# `make setup`: every step in scripts/setup.d/ in order. Each step is idempotent and skips work
# that is already done, so a second `make setup` takes seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for step in "$ROOT"/scripts/setup.d/*.sh; do
  log "setup: ${step##*/}"
  bash "$step"
done
