#!/usr/bin/env bash
# setup: up
# The test host image: Debian 12 with systemd as PID 1, for rootful podman (Molecule, `make up`).
# debootstrap builds the root filesystem once; its tarball is kept in the cache, so a fresh clone
# (or a machine that shares the cache) only re-imports it. The tag is a hash of the recipe below:
# change the recipe and a new image is built beside the old one.
# Prints nothing when the image is present; `$0 --print-image` prints its name.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

suite=bookworm
packages=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,sudo,iproute2,ca-certificates
recipe="$suite $packages minbase v2"
tag="$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
image="localhost/llm-canary-debian12-systemd:$tag"
if [ "${1:-}" = --print-image ]; then
  echo "$image"
  exit 0
fi

apt_ensure podman runc debootstrap

# shellcheck disable=SC2317  # called by podman_rootfs_image
container_host() {
  local rootfs="$1" unit
  # Security and point-release updates, as on a real Debian 12 VM.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $suite-security main
EOF
  # A container has no consoles or kernel file systems to set up: these units only fail there.
  for unit in getty@tty1.service console-getty.service systemd-remount-fs.service \
    sys-kernel-config.mount sys-kernel-debug.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # The host's image id is written by systemd at first boot; an empty file makes it do that.
  : >"$rootfs/etc/machine-id"
  # No package lists (a cached image would carry stale ones), dated so that apt's
  # cache_valid_time sees them as old and refreshes them, as on a real VM.
  touch -d @0 "$rootfs/var/lib/apt/lists"
}

# CMD in JSON form: the shell form would run systemd under /bin/sh, not as PID 1.
podman_rootfs_image "$image" "$CACHE_DIR/images/debian12-systemd-$tag.tar.gz" "$packages" container_host \
  'CMD ["/sbin/init"]' 'STOPSIGNAL=SIGRTMIN+3' 'ENV container=podman'
