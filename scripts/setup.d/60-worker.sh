#!/usr/bin/env bash
# The edge Worker's test tools: Node.js 20+, then miniflare (workerd), wrangler and jose from
# tests/worker/package-lock.json with `npm ci` (skipped while node_modules matches the lock and the
# Node version), and the virtual environments `ansible-test sanity` uses for llm_canary.cloud.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

# miniflare 4 and wrangler 4 need Node.js 20; Debian 12's own nodejs is 18.
command -v node >/dev/null || apt_ensure nodejs
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: tests/worker needs Node.js 20 or newer"
command -v npm >/dev/null || die "npm is missing: install the npm that comes with Node.js $(node --version)"

worker_dir="$ROOT/tests/worker"
stamp="$worker_dir/node_modules/.llm-canary-installed"
want="$(sha256sum "$worker_dir/package-lock.json" | cut -d' ' -f1) node-$(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm ci in tests/worker (miniflare, wrangler, jose; cache in $npm_config_cache)"
  (cd "$worker_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi

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
"""llm-canary's offline stand-in for ansible-test's get-pip script (scripts/setup.d/60-worker.sh):
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
