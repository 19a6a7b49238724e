#!/usr/bin/env bash
# The virtualenv: pinned dependencies from requirements/*.txt (constraints.txt pins the whole set).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
stamp="$VENV/.llm-canary-installed"
want="$(cat "$ROOT"/requirements/*.txt "$ROOT"/gateway/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
args=()
for req in "$ROOT"/requirements/*.txt; do
  [ "${req##*/}" = constraints.txt ] || args+=(-r "$req")
done
[ -f "$ROOT/gateway/pyproject.toml" ] && args+=(-e "$ROOT/gateway")
"$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/requirements/constraints.txt" "${args[@]}"
echo "$want" >"$stamp"
