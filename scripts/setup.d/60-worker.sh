#!/usr/bin/env bash
# setup: up
# The edge Worker's tools: Node.js 20+, then miniflare and workerd (the local target runs the
# Worker in it), wrangler and jose from tests/worker/package-lock.json with `npm ci` (skipped while
# node_modules matches the lock and the Node version).
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
