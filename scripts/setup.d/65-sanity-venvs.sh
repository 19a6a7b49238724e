#!/usr/bin/env bash
# The virtual environments `ansible-test sanity` uses for llm_canary.cloud (the tests only).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# `ansible-test sanity` runs each test in its own venv, made once per ansible-core version.
core_version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-core"))')"
sanity_stamp="$HOME/.ansible/test/venv/.llm-canary-primed-$core_version"
[ -f "$sanity_stamp" ] && exit 0

# ansible-test bootstraps pip in each venv with a get-pip script from a host this network cannot
# reach. This stand-in takes get-pip's arguments and uses the interpreter's ensurepip instead; a
# real get-pip script already in the cache is left alone.
pip_version="$("$VENV/bin/python" -c 'import re, inspect, ansible_test._internal.python_requirements as r
print(re.search(r"pip=.([0-9.]+).", inspect.getsource(r)).group(1))')"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip" <<'PY'
"""llm-canary's offline stand-in for ansible-test's get-pip script (scripts/setup.d/65-sanity-venvs.sh):
pip from the interpreter's own ensurepip, then get-pip's arguments to pip install."""
import subprocess
import sys

# ensurepip runs in a child: in-process it sets PIP_CONFIG_FILE=/dev/null, hiding the pip config.
status = subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
if status == 0:
    status = subprocess.call([sys.executable, "-m", "pip", "install", *args])
if status == 0 and "--no-setuptools" in sys.argv:
    status = subprocess.call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"])
sys.exit(status)
PY
fi

log "ansible-test sanity --prime-venvs (the first time: about 3 minutes)"
(cd "$ROOT/collections/ansible_collections/llm_canary/cloud" &&
  "$VENV/bin/ansible-test" sanity --prime-venvs --python 3.11 --local --color no >/dev/null)
mkdir -p "$(dirname "$sanity_stamp")"
touch "$sanity_stamp"
