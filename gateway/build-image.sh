#!/usr/bin/env bash
# Build the gateway's container image. The wheelhouse (this package and its pinned dependencies)
# is made here with pip, through this machine's index and certificates; the image build then
# installs from it with --no-index, so it needs no network and compiles nothing.
# Usage: gateway/build-image.sh IMAGE BASE_IMAGE [more podman build arguments...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 IMAGE BASE_IMAGE [podman build args...]" >&2; exit 2; }
image="$1" base="$2"
shift 2
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -r "$here/Dockerfile" "$here/pyproject.toml" "$here/README.md" "$here/src" "$context/"
find "$context/src" -name '__pycache__' -prune -exec rm -rf {} +
python3 -m pip wheel -q --disable-pip-version-check --prefer-binary --wheel-dir "$context/wheels" "$context"
podman --runtime runc build --quiet --build-arg BASE="$base" -t "$image" "$context" "$@"
