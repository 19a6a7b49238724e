#!/usr/bin/env bash
# `make setup`: every step in scripts/setup.d/ in order. Each step is idempotent and skips work
# that is already done, so a second `make setup` takes seconds.
#   scripts/setup.sh          every step (`make setup`, before the tests)
#   scripts/setup.sh up       the steps the local target needs (`make up`), marked `# setup: up`
#   scripts/setup.sh deps     the steps a deploy to Google Cloud needs (`make deps`), `# setup: deps`
set -euo pipefail
source "$(dirname "$0")/lib.sh"
profile="${1:-}"
case "$profile" in
  "" | up | deps) ;;
  *) die "unknown setup profile '$profile' (expected up or deps)" ;;
esac
for step in "$ROOT"/scripts/setup.d/*.sh; do
  if [ -n "$profile" ] && ! grep -Eq "^# setup:.* $profile( |\$)" "$step"; then continue; fi
  log "setup: ${step##*/}"
  bash "$step"
done
