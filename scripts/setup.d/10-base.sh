#!/usr/bin/env bash
# setup: deps up
# Debian packages every part of the project needs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
apt_ensure ca-certificates curl git make cmake ninja-build ccache g++ python3-venv unzip zstd
