#!/usr/bin/env bash
# make lint: ansible-lint (production profile, offline), yamllint, ruff.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
log "yamllint"
yamllint --strict .
log "ansible-lint (production profile, offline)"
ansible-lint --offline
log "ruff"
ruff check .
ruff format --check .
