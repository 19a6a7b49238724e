#!/usr/bin/env bash
# setup: up
# Observability's tools: Debian's Prometheus (the server the dashboard test starts on
# loopback, and promtool, which checks and unit-tests observability/prometheus/). The package's
# own service is never started here (no systemd as PID 1); the tests run the binary themselves.
# jq and curl: observability/promq and the commands of docs/runbook.md.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

apt_ensure prometheus jq curl
command -v promtool >/dev/null || die "promtool missing after installing prometheus"
