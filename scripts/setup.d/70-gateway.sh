#!/usr/bin/env bash
# setup: up
# The local base image the gateway's Dockerfile is built against (by its tests and the local
# target; the local Worker runs on it too): Debian 12 minbase with python3 and python3-venv (no
# registry is reachable here). The rootfs tarball is cached; the tag is a hash of
# the recipe. `$0 --print-image` prints the base image's name.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

packages=python3,python3-venv,ca-certificates
recipe="bookworm $packages minbase gateway-base v1"
tag="$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
image="localhost/llm-canary-python3:$tag"
if [ "${1:-}" = --print-image ]; then
  echo "$image"
  exit 0
fi

apt_ensure podman runc debootstrap util-linux

# shellcheck disable=SC2317  # called by podman_rootfs_image
runtime_base() {
  # What a runtime image does not need: docs, man pages, locales.
  rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/*
}
podman_rootfs_image "$image" "$CACHE_DIR/images/gateway-base-$tag.tar.gz" "$packages" runtime_base \
  'CMD ["/usr/bin/python3"]'
