#!/usr/bin/env bash
# make bench: every benchmark in scripts/bench.d/, each printing ratios against a baseline
# measured in the same run (these machines are noisy; absolute numbers mean little).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for bench in "$ROOT"/scripts/bench.d/*.sh; do
  [ -e "$bench" ] || die "no benchmarks in scripts/bench.d/"
  log "bench: ${bench##*/}"
  bash "$bench"
done
