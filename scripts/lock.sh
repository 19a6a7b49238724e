#!/usr/bin/env bash
# Rewrite requirements/constraints.txt: install the project's dependencies into a scratch venv,
# unconstrained, and freeze it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
mapfile -t args < <(venv_install_args)
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "${args[@]}"
{ echo "# Full lock of the virtualenv (make lock rewrites it from a fresh install of requirements/*.txt and gateway/)."
  "$tmp/venv/bin/pip" freeze --exclude-editable; } >"$ROOT/requirements/constraints.txt"
