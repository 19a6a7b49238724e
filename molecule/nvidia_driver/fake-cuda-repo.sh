#!/usr/bin/env bash
# fake-cuda-repo.sh DEST: a stand-in for NVIDIA's CUDA repository (a flat apt repository, like
# developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/), signed by a throw-away key:
# DEST/3bf863cc.pub (the public key), DEST/fingerprint, InRelease, Packages and
#  - empty packages of the driver at three branches, so that apt's choice under the nvidia_driver
#    role's pinning can be checked;
#  - cuda-toolkit-12-8 and cuda-toolkit-12-9, each with a stub /usr/local/cuda-12.N/bin/nvcc that
#    prints its release (for the cuda_toolkit role);
#  - a kernel's headers and the flavour's headers metapackage depending on them (versions above
#    Debian's, so apt takes these), for the nvidia_driver role's headers choice.
# Used by the nvidia_driver and cuda_toolkit scenarios. Rebuilt when missing or made by another
# version of this script.
set -euo pipefail
dest="$1"
stamp="$(sha256sum "$0" | cut -d' ' -f1)"
[ -f "$dest/InRelease" ] && [ "$(cat "$dest/stamp" 2>/dev/null)" = "$stamp" ] && exit 0
rm -rf "$dest" && mkdir -p "$dest"
export GNUPGHOME="$dest.gnupg"
rm -rf "$GNUPGHOME" && mkdir -m 0700 "$GNUPGHOME"
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT
gpg --batch --quiet --passphrase '' --quick-gen-key 'llm-canary test CUDA repository <test@invalid>' ed25519 sign never
gpg --batch --armor --export >"$dest/3bf863cc.pub"
gpg --batch --with-colons --list-keys | awk -F: '/^fpr:/ {print $10; exit}' >"$dest/fingerprint"

# package NAME VERSION [DEPENDS [NVCC_RELEASE]]: an empty package, or one holding a stub nvcc.
package() {
  local stage
  stage="$(mktemp -d)" && chmod 0755 "$stage"
  mkdir -p "$stage/DEBIAN"
  {
    printf 'Package: %s\nVersion: %s\nArchitecture: amd64\n' "$1" "$2"
    [ -z "${3:-}" ] || printf 'Depends: %s\n' "$3"
    printf 'Maintainer: llm-canary tests <test@invalid>\nDescription: test package\n'
  } >"$stage/DEBIAN/control"
  if [ -n "${4:-}" ]; then
    mkdir -p "$stage/usr/local/cuda-$4/bin"
    printf '#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver (test stub)"\necho "Cuda compilation tools, release %s, V%s.0"\n' \
      "$4" "$4" >"$stage/usr/local/cuda-$4/bin/nvcc"
    chmod 0755 "$stage/usr/local/cuda-$4/bin/nvcc"
  fi
  dpkg-deb --root-owner-group -Zgzip --build "$stage" "$dest/${1}_${2}_amd64.deb" >/dev/null
  rm -rf "$stage"
}

for version in 575.57.08-1 580.95.05-1 590.44.01-1; do
  for name in nvidia-driver-cuda nvidia-kernel-open-dkms nvidia-kernel-dkms nvidia-persistenced; do
    package "$name" "$version"
  done
done
for release in 12.8 12.9; do
  package "cuda-toolkit-${release/./-}" "$release.0-1" "" "$release"
done
package linux-headers-6.1.0-99-cloud-amd64 6.1.999-1
package linux-headers-cloud-amd64 6.1.999-1 linux-headers-6.1.0-99-cloud-amd64

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
echo "$stamp" >stamp
