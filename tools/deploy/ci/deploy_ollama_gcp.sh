#!/usr/bin/env bash
# The seed's canary entry point, kept for existing CI: a thin wrapper of playbooks/canary.yml.
#   TARGET=local tools/deploy/ci/deploy_ollama_gcp.sh          (what `make canary` runs)
#   PROJECT_ID=my-project tools/deploy/ci/deploy_ollama_gcp.sh [more ansible-playbook arguments]
# Exit status: 0 the canary passed, 1 it failed, 2 the deploy failed (CONTRACTS §5). JUnit XML and
# the verdict are in outputs/canary/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
if [ -n "${PROJECT_ID:-}" ]; then
  target_args=(-e "project_id=$PROJECT_ID")
elif [ -n "${TARGET:-}" ]; then
  target_args=(-e "target=$TARGET")
else
  echo "set PROJECT_ID=<gcp project> or TARGET=local" >&2
  exit 2
fi
status=0
ansible-playbook playbooks/canary.yml "${target_args[@]}" "$@" || status=$?
# Anything but the canary's own 0 and 1 (a failed task, an unreachable host, bad options) is a
# failed deploy.
case "$status" in
  0 | 1) exit "$status" ;;
  *) exit 2 ;;
esac
