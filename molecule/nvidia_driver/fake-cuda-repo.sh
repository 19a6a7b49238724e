#!/usr/bin/env bash
# fake-cuda-repo.sh DEST: a stand-in for NVIDIA's CUDA repository (a flat apt repository, like
# developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/), signed by a throw-away key:
# DEST/3bf863cc.pub (the public key), DEST/fingerprint, InRelease, Packages and empty packages of
# the driver at three branches, so that apt's choice under the role's pinning can be checked.
# Rebuilt only when missing.
set -euo pipefail
dest="$1"
[ -f "$dest/InRelease" ] && exit 0
rm -rf "$dest" && mkdir -p "$dest"
export GNUPGHOME="$dest.gnupg"
rm -rf "$GNUPGHOME" && mkdir -m 0700 "$GNUPGHOME"
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT
gpg --batch --quiet --passphrase '' --quick-gen-key 'llm-canary test CUDA repository <test@invalid>' ed25519 sign never
gpg --batch --armor --export >"$dest/3bf863cc.pub"
gpg --batch --with-colons --list-keys | awk -F: '/^fpr:/ {print $10; exit}' >"$dest/fingerprint"

packages=(nvidia-driver-cuda nvidia-kernel-open-dkms nvidia-kernel-dkms nvidia-persistenced)
for version in 575.57.08-1 580.95.05-1 590.44.01-1; do
  for package in "${packages[@]}"; do
    stage="$(mktemp -d)"
    mkdir -p "$stage/DEBIAN"
    printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: llm-canary tests <test@invalid>\nDescription: empty test package\n' \
      "$package" "$version" >"$stage/DEBIAN/control"
    dpkg-deb --root-owner-group -Zgzip --build "$stage" "$dest/${package}_${version}_amd64.deb" >/dev/null
    rm -rf "$stage"
  done
done
cd "$dest"
for deb in *.deb; do
  dpkg-deb -f "$deb"
  printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$deb" "$(stat -c %s "$deb")" "$(sha256sum "$deb" | cut -d' ' -f1)"
done >Packages
{
  printf 'Origin: llm-canary test\nLabel: fake CUDA repository\nArchitectures: amd64\nDate: %s\nSHA256:\n' \
    "$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
  printf ' %s %s Packages\n' "$(sha256sum Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"
} >Release
gpg --batch --yes --clearsign --output InRelease Release
