# The QEMU test VM: recipe and paths, shared by scripts/setup.d/55-vm-image.sh (builds the image)
# and scripts/test-vm.sh (boots it). Source it after lib.sh.
# shellcheck shell=bash
VM_PACKAGES=systemd,systemd-sysv,udev,dbus,linux-image-cloud-amd64,openssh-server,python3,python3-apt,sudo,iproute2,ca-certificates,curl
VM_DISK_SIZE=6G
# A new recipe is a new image directory, so a changed recipe never reuses a stale image.
VM_IMAGE_DIR="$CACHE_DIR/vm/debian12-$(cat "$ROOT/scripts/setup.d/55-vm-image.sh" "$ROOT/tests/vm/vm.sh" | sha256sum | cut -c1-12)"
