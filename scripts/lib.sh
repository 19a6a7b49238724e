# Shared by the scripts under scripts/: paths, caches and small helpers. Source it; do not run it.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Slow things (downloads, ccache, pip/npm caches, the test image) live outside the checkout, so a
# fresh clone reuses them; build outputs live in build/ inside it.
CACHE_DIR="${LLM_CANARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-canary}"
# The plays read it too (group_vars/all/local.yml: local_cache_dir).
export LLM_CANARY_CACHE="$CACHE_DIR"
BUILD_DIR="$ROOT/build"
VENV="$ROOT/.venv"
export PIP_CACHE_DIR="$CACHE_DIR/pip"
export npm_config_cache="$CACHE_DIR/npm"
export CCACHE_DIR="$CACHE_DIR/ccache"
mkdir -p "$CACHE_DIR" "$BUILD_DIR"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_ensure PKG...: install the Debian packages that are not installed yet (no-op when all are).
apt_ensure() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ ! -f "$CACHE_DIR/apt-updated" ] || [ -n "$(find "$CACHE_DIR/apt-updated" -mmin +360)" ]; then
    $sudo apt-get update -qq && touch "$CACHE_DIR/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# fetch URL SHA256 DEST: download once into the cache, verify, copy to DEST. A wrong checksum
# deletes the download and fails, so a poisoned cache never survives.
fetch() {
  local url="$1" sha="$2" dest="$3" cached
  cached="$CACHE_DIR/downloads/${sha}-${url##*/}"
  mkdir -p "$CACHE_DIR/downloads" "$(dirname "$dest")"
  if [ ! -f "$cached" ]; then
    log "download ${url##*/}"
    curl -fsSL --retry 3 -o "$cached.part" "$url" || die "download failed: $url"
    mv "$cached.part" "$cached"
  fi
  if ! echo "$sha  $cached" | sha256sum -c --quiet -; then
    rm -f "$cached"
    die "sha256 mismatch for $url (expected $sha)"
  fi
  # Replaced atomically: another checkout sharing the cache may be reading DEST right now.
  if ! [ "$cached" -ef "$dest" ] && ! cmp -s "$cached" "$dest"; then
    cp -f "$cached" "$dest.$$.part" && mv -f "$dest.$$.part" "$dest"
  fi
}

# venv_install_args: pip arguments that install the project's Python dependencies (every
# requirements/*.txt but the lock, and the gateway package), shared by setup and `make lock`.
venv_install_args() {
  local req
  for req in "$ROOT"/requirements/*.txt; do
    [ "${req##*/}" = constraints.txt ] || printf '%s\n' -r "$req"
  done
  [ -f "$ROOT/gateway/pyproject.toml" ] && printf '%s\n' -e "$ROOT/gateway"
  return 0
}

# debootstrap_rootfs DIR PACKAGES: a minimal Debian 12 root file system in DIR with the
# comma-separated PACKAGES (mirror: $LLM_CANARY_DEBIAN_MIRROR). Shared by the test images.
DEBIAN_MIRROR="${LLM_CANARY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debootstrap_rootfs() {
  local dir="$1" packages="$2"
  debootstrap --variant=minbase --include="$packages" bookworm "$dir" "$DEBIAN_MIRROR" >"$dir.log" 2>&1 \
    || { tail -30 "$dir.log"; die "debootstrap failed (log: $dir.log)"; }
  rm -f "$dir.log"
}

# podman_rootfs_image IMAGE TARBALL PACKAGES CUSTOMISE [CHANGE...]: make sure podman has IMAGE,
# imported from TARBALL with the Dockerfile-style CHANGEs. A missing TARBALL is built (and kept in
# the cache, so a fresh clone only re-imports): debootstrap PACKAGES, drop apt's caches and lists,
# run the shell function CUSTOMISE with the root file system's path, pack.
podman_rootfs_image() {
  local image="$1" tarball="$2" packages="$3" customise="$4" change
  shift 4
  podman image exists "$image" && return 0
  if [ ! -f "$tarball" ]; then
    log "debootstrap Debian 12 for $image (about a minute)"
    PODMAN_ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$PODMAN_ROOTFS"' EXIT
    debootstrap_rootfs "$PODMAN_ROOTFS" "$packages"
    rm -rf "$PODMAN_ROOTFS"/var/cache/apt/archives/*.deb "$PODMAN_ROOTFS"/var/lib/apt/lists/*
    "$customise" "$PODMAN_ROOTFS"
    mkdir -p "$(dirname "$tarball")"
    tar -C "$PODMAN_ROOTFS" --numeric-owner -czf "$tarball.part" .
    mv "$tarball.part" "$tarball"
  fi
  log "podman import $image"
  local changes=()
  for change in "$@"; do changes+=(--change "$change"); done
  podman import "${changes[@]}" --quiet "$tarball" "$image" >/dev/null
}

activate_venv() {
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
}
