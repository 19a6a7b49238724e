#!/usr/bin/env bash
# make test-worker: files/worker.js in the real Workers runtime (workerd through Miniflare, Node's
# test runner, tokens minted by jose); the cloudflare_worker module and playbooks/edge.yml against
# the fake Cloudflare API (tests/fakes/cloudflare), including an upload compared with wrangler's;
# and `ansible-test sanity` for the llm_canary.cloud collection.
# Arguments go to pytest, e.g. `scripts/test-worker.sh -k wrangler`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ -d tests/worker/node_modules/miniflare ] || die "tests/worker/node_modules is missing: run make setup"

log "the Worker in workerd (tests/worker/test)"
(cd tests/worker && node --test --test-reporter=spec --test-concurrency=1 --test-timeout=60000 test/*.test.js)

log "cloudflare_worker and playbooks/edge.yml against the fake Cloudflare API"
PYTHONPATH="$ROOT/collections" python -m pytest -p no:cacheprovider -q --timeout=300 \
  collections/ansible_collections/llm_canary/cloud/tests/unit tests/worker/test_edge_playbook.py "$@"

log "ansible-test sanity (llm_canary.cloud)"
cd collections/ansible_collections/llm_canary/cloud
ansible-test sanity --python 3.11 --local --color no
