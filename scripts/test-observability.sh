#!/usr/bin/env bash
# make test (observability): promtool checks and unit-tests the alert and recording rules, then
# pytest runs tests/observability: the rules against CONTRACTS §6 (and fail when an alert is
# broken), the scrape configurations, the Datadog play against a fake Datadog API, and the
# dashboard's queries on a real Prometheus scraping a real gateway, llama-server and ai_exporter
# (loopback only). Arguments go to pytest, e.g. `scripts/test-observability.sh -k datadog`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v promtool >/dev/null || die "no promtool: run make setup (scripts/setup.d/80-observability.sh)"
export LLAMA_SERVER_BIN_PATH="${LLAMA_SERVER_BIN_PATH:-$BUILD_DIR/llama.cpp/bin/llama-server}"
[ -x "$LLAMA_SERVER_BIN_PATH" ] || die "no llama-server at $LLAMA_SERVER_BIN_PATH: run make setup"
activate_venv
log "promtool check rules"
promtool check rules observability/prometheus/alerts.yaml
log "promtool test rules"
promtool test rules observability/prometheus/*.test.yaml
log "pytest tests/observability"
exec timeout 600 python -m pytest -p no:cacheprovider -q --durations=5 tests/observability "$@"
