#!/usr/bin/env bash
# make test-e2e: the local target end to end (tests/e2e): bad input, `make up`'s play from a clean
# state, the curl, a rerun with changed=0, the canary passing, failing while llama-server is
# stopped, passing again, and destroy. Replaces any local stack of this checkout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
exec python -m pytest -p no:cacheprovider -q --durations=20 tests/e2e "$@"
