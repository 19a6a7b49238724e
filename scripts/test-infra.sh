#!/usr/bin/env bash
# make test-infra: the GCP play (playbooks/infra.yml, destroy.yml, the dynamic inventory) run by
# ansible-playbook against the discovery-validated fake GCP API (tests/fakes/gcp), and the unit
# tests of our gcp_* module code. No real cloud is reached: the fake's proxy refuses other hosts.
# Serial: most tests read one shared deployment (and a few shared variants), made once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
python -m pytest -p no:cacheprovider --timeout=300 -q tests/infra "$@"
