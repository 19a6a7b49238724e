#!/usr/bin/env bash
# make test-vm: the host roles on a real (emulated) Debian 12 VM, checked over SSH by the same
# tests/testinfra files Molecule uses. QEMU with TCG boots the cached image (make setup,
# scripts/setup.d/55-vm-image.sh) from a throw-away overlay, with a second, blank disk that plays
# the Ollama VM's model disk (serial google-models, named as GCE names it by tests/vm/prepare.yml);
# the model_disk role formats and mounts it (tests/vm/model-disk.yml, twice: the second run must
# change nothing; then its faults, tests/vm/model-disk-faults.yml); playbooks/hosts.yml installs
# llama.cpp from the prebuilt archive and the exporter, as on GCE (the VM is in the llamacpp group).
# KEEP=1 leaves the VM running afterwards (ssh -F build/vm/ssh_config llm-canary-vm).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/tests/vm/vm.sh"
cd "$ROOT"

[ -f "$VM_IMAGE_DIR/rootfs.qcow2" ] || die "the VM image is missing: run make setup"
for built in llama.cpp/bin/llama-server models/llm-canary-tiny.gguf; do
  [ -f "$BUILD_DIR/$built" ] || die "build/$built is missing: run make setup"
done
run="$BUILD_DIR/vm"
if [ -f "$run/qemu.pid" ] && kill -0 "$(cat "$run/qemu.pid")" 2>/dev/null; then
  die "a test VM is still running (pid $(cat "$run/qemu.pid")): stop it first"
fi
rm -rf "$run" && mkdir -p "$run"
qemu-img create -q -f qcow2 -F qcow2 -b "$VM_IMAGE_DIR/rootfs.qcow2" "$run/disk.qcow2"
# A fresh, blank data disk each run (sparse: it takes no space until written).
qemu-img create -q -f raw "$run/models.raw" 1G
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

stop_vm() { [ -f "$run/qemu.pid" ] && kill "$(cat "$run/qemu.pid")" 2>/dev/null || true; }
[ "${KEEP:-}" = 1 ] || trap stop_vm EXIT
log "boot the test VM (QEMU TCG, ssh on 127.0.0.1:$port)"
start=$SECONDS
# TCG: /dev/kvm here cannot boot a stock kernel. -cpu max gives the guest AVX2 for llama.cpp.
# The data disk sits in a later PCI slot (addr=0x10) than the root disk, so the root disk stays
# /dev/vda (QEMU places an explicit -device before the -drive if=virtio one otherwise).
qemu-system-x86_64 -name llm-canary-vm -machine q35,accel=tcg -cpu max -smp 2 -m 4096 \
  -kernel "$VM_IMAGE_DIR/vmlinuz" -initrd "$VM_IMAGE_DIR/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet" \
  -drive "file=$run/disk.qcow2,if=virtio,format=qcow2" \
  -drive "file=$run/models.raw,if=none,id=models,format=raw" \
  -device virtio-blk-pci,drive=models,serial=google-models,addr=0x10 \
  -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 \
  -display none -serial "file:$run/console.log" -daemonize -pidfile "$run/qemu.pid"

cat >"$run/ssh_config" <<CONF
Host llm-canary-vm
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $VM_IMAGE_DIR/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ControlMaster auto
  ControlPath $run/ssh-%C
  ControlPersist 15m
CONF
until ssh -F "$run/ssh_config" -o ConnectTimeout=5 llm-canary-vm true 2>/dev/null; do
  [ $((SECONDS - start)) -lt 240 ] || { tail -30 "$run/console.log"; die "the VM did not answer ssh in 240 s"; }
  kill -0 "$(cat "$run/qemu.pid")" 2>/dev/null || { tail -30 "$run/console.log"; die "QEMU exited before the VM answered ssh"; }
  sleep 2
done
log "VM up after $((SECONDS - start)) s"

# The VM plays the llama.cpp VM (Ollama and the driver are Molecule's: a TCG guest is slow);
# its variables: tests/vm/host_vars.yml.
cat >"$run/inventory.yml" <<INV
all:
  children:
    llamacpp:
      hosts: {llm-canary-vm: {}}
  vars:
    # ssh_config maps the name to 127.0.0.1:$port, the key and the shared connection.
    ansible_host: llm-canary-vm
    ansible_user: root
    ansible_ssh_common_args: -F $run/ssh_config
    ansible_python_interpreter: /usr/bin/python3
INV
# pack-llama-server.yml (shared with Molecule) packs into the "ephemeral directory": the run's.
export MOLECULE_EPHEMERAL_DIRECTORY="$run" MOLECULE_PROJECT_DIRECTORY="$ROOT"
log "prepare: the llama-server archive, fresh package lists"
ansible-playbook -i "$run/inventory.yml" tests/vm/prepare.yml
log "model_disk on the VM's second disk"
ansible-playbook -i "$run/inventory.yml" tests/vm/model-disk.yml
log "model_disk again: nothing may change"
ansible-playbook -i "$run/inventory.yml" tests/vm/model-disk.yml | tee "$run/model-disk-again.log"
grep -Eq 'llm-canary-vm +: ok=[0-9]+ +changed=0 ' "$run/model-disk-again.log" \
  || die "the second model_disk run changed something (see the report above)"
log "model_disk faults"
ansible-playbook -i "$run/inventory.yml" tests/vm/model-disk-faults.yml
log "playbooks/hosts.yml on the VM"
ansible-playbook -i "$run/inventory.yml" -e @tests/vm/host_vars.yml playbooks/hosts.yml
log "tests/testinfra over SSH"
# The proxy's checks verify its certificate with the model CA, as a client holds it (a copy on the VM).
scp -q -F "$run/ssh_config" "$run/credentials/ca.crt" llm-canary-vm:/usr/local/share/llm-canary-model-ca.crt
# Group model_disk: the VM carries the model disk (tests/testinfra/test_model_disk.py).
MODEL_PROXY_CA_FILE=/usr/local/share/llm-canary-model-ca.crt \
  LLM_CANARY_HOST_GROUPS=llamacpp,model_disk LLAMACPP_MODEL_NAME=llm-canary-tiny pytest -p no:cacheprovider -q -rs --hosts=ssh://llm-canary-vm --ssh-config="$run/ssh_config" tests/testinfra
log "test-vm passed in $((SECONDS - start)) s"
