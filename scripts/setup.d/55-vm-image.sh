#!/usr/bin/env bash
# The VM image for `make test-vm`: Debian 12 with the cloud kernel, debootstrapped into an ext4
# qcow2, booted by QEMU with -kernel/-initrd (no bootloader). Cached in ~/.cache/llm-canary/vm
# under a hash of this recipe; each test run boots a throw-away overlay, so the image stays clean.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT/tests/vm/vm.sh"
apt_ensure qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client
[ -f "$VM_IMAGE_DIR/rootfs.qcow2" ] && exit 0

log "build the test VM image (debootstrap Debian 12 + linux-image-cloud-amd64, a few minutes)"
work="$VM_IMAGE_DIR.tmp"
rm -rf "$work" && mkdir -p "$work"
trap 'umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null || true' EXIT
debootstrap_rootfs "$work/rootfs" "$VM_PACKAGES"

ssh-keygen -q -t ed25519 -N '' -C llm-canary-test-vm -f "$work/id_ed25519"
root="$work/rootfs"
echo llm-canary-vm >"$root/etc/hostname"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
# QEMU user networking: DHCP from 10.0.2.2, DNS at 10.0.2.3.
cat >"$root/etc/systemd/network/10-dhcp.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
chroot "$root" systemctl enable systemd-networkd ssh >/dev/null 2>&1
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
cp -L "$root/vmlinuz" "$work/vmlinuz"
cp -L "$root/initrd.img" "$work/initrd.img"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages

mkfs.ext4 -q -F -L root -d "$root" "$work/rootfs.raw" "$VM_DISK_SIZE"
qemu-img convert -O qcow2 "$work/rootfs.raw" "$work/rootfs.qcow2"
rm -rf "$work/rootfs" "$work/rootfs.raw"
rm -rf "$VM_IMAGE_DIR" && mv "$work" "$VM_IMAGE_DIR"
