#!/usr/bin/env bash
# setup: deps up
# The virtualenv: the pinned dependencies (requirements/*.txt and the gateway package), locked by
# requirements/constraints.txt. Reinstalls only when one of those files changed.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
stamp="$VENV/.llm-canary-installed"
want="$(cat "$ROOT"/requirements/*.txt "$ROOT"/gateway/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
mapfile -t args < <(venv_install_args)
"$VENV/bin/pip" install -q --disable-pip-version-check -c "$ROOT/requirements/constraints.txt" "${args[@]}"
echo "$want" >"$stamp"
