#!/usr/bin/env bash
# The gateway's test and benchmark tools (nginx, wrk, podman), the tiny test model, and the local
# base image its Dockerfile is built against in the tests: Debian 12 minbase with python3 and
# python3-venv (no registry is reachable here). The rootfs tarball is cached; the tag is a hash of
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

apt_ensure nginx wrk podman runc debootstrap util-linux

model="$BUILD_DIR/models/llm-canary-tiny.gguf"
[ -f "$model" ] || "$VENV/bin/python" "$ROOT/gateway/tests/tiny_model.py" "$model"

podman image exists "$image" && exit 0
tarball="$CACHE_DIR/images/gateway-base-$tag.tar.gz"
if [ ! -f "$tarball" ]; then
  log "debootstrap Debian 12 (minbase + python3) for the gateway's base image (about a minute)"
  rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap_rootfs "$rootfs" "$packages"
  # What a runtime image does not need: package lists and caches, docs, man pages, locales.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  mkdir -p "$(dirname "$tarball")"
  tar -C "$rootfs" --numeric-owner -czf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi
log "podman import $image"
podman import --change 'CMD ["/usr/bin/python3"]' --quiet "$tarball" "$image" >/dev/null
