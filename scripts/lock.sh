#!/usr/bin/env bash
# Rewrite requirements/constraints.txt: install requirements/*.txt into a scratch venv and freeze it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
args=()
for req in "$ROOT"/requirements/*.txt; do [ "${req##*/}" = constraints.txt ] || args+=(-r "$req"); done
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "${args[@]}"
{ echo "# Full lock of the virtualenv (make lock rewrites it from a fresh install of requirements/*.txt)."
  "$tmp/venv/bin/pip" freeze --exclude-editable; } >"$ROOT/requirements/constraints.txt"
