"""Instances that boot: each VM the fake Compute API creates becomes a systemd host in rootful podman.

The host is the project's test image (scripts/setup.d/50-test-image.sh: Debian 12, systemd as PID
1, sshd). It answers on the address the fake reports as the VM's external IP, on a podman network
the fake owns, and, like a real VM, does not take SSH at once: `ssh_delay_s` after it started, a
stand-in for GCE's guest agent gives the host its own SSH host keys, installs the instance
metadata's `ssh-keys` entries (`USER:KEY` lines: each user made, in group google-sudoers with
passwordless sudo, the keys in its authorized_keys) and only then starts sshd. Deleting the
instance removes the host; a recreated instance is a new host with new host keys.

Everything carries the label `llm-canary.fake-gce=<run id>`; `close()` removes exactly that.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL = "llm-canary.fake-gce"
# Limits rootful podman with runc accepts here (docs: MACHINE-FACTS.md).
_RUN_OPTIONS = [
    "--runtime",
    "runc",
    "run",
    "--detach",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
    "--cap-add",
    "SYS_ADMIN",
]
# sshd stays off until the guest agent has run (a drop-in mounted into the image's ssh.service).
_SSH_GATE = "/run/fakegce-guest-agent-done"
_SSH_DROPIN = f"[Unit]\nConditionPathExists={_SSH_GATE}\n"
# What the guest agent does on first boot; arguments: USER KEY [USER KEY ...].
_GUEST_AGENT = f"""
systemctl is-system-running --wait >/dev/null 2>&1 || true
rm -f /etc/ssh/ssh_host_*
ssh-keygen -A >/dev/null
getent group google-sudoers >/dev/null || groupadd google-sudoers
printf '%%google-sudoers ALL=(ALL:ALL) NOPASSWD:ALL\\n' >/etc/sudoers.d/google_sudoers
chmod 0440 /etc/sudoers.d/google_sudoers
while [ $# -ge 2 ]; do
  user=$1 key=$2; shift 2
  id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups google-sudoers "$user"
  install -d -m 0700 -o "$user" -g "$user" "/home/$user/.ssh"
  printf '# Added by Google\\n%s\\n' "$key" >>"/home/$user/.ssh/authorized_keys"
  chown "$user:$user" "/home/$user/.ssh/authorized_keys"
  chmod 0600 "/home/$user/.ssh/authorized_keys"
done
touch {_SSH_GATE}
systemctl start ssh
"""


def ssh_keys(vm: dict[str, Any]) -> list[tuple[str, str]]:
    """The (user, key) pairs of the instance's `ssh-keys` metadata, as the guest agent reads them."""
    items = (vm.get("metadata") or {}).get("items") or []
    value = next((i.get("value", "") for i in items if i.get("key") == "ssh-keys"), "")
    pairs = []
    for line in value.splitlines():
        user, sep, key = line.strip().partition(":")
        if sep and user and key:
            pairs.append((user, key.strip()))
    return pairs


@dataclass
class PodmanHosts:
    """The booting backend of the fake Compute API (ComputeState.hosts)."""

    run_id: str
    image: str
    workdir: Path
    subnet: str = "10.89.77.0/24"
    ssh_delay_s: float = 8.0
    # Extra `podman run` arguments for every host (e.g. shared apt caches).
    extra_args: list[str] = field(default_factory=list)
    # What happened, for tests: (event, instance name, monotonic time).
    events: list[tuple[str, str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.network = f"fakegce-{self.run_id}"
        self.label = f"{LABEL}={self.run_id}"
        self._threads: list[threading.Thread] = []
        self._dropin = self.workdir / "fakegce-ssh.conf"

    @property
    def external_ip_prefix(self) -> str:
        """The first three octets of the subnet: the fake hands out external IPs from .10 on."""
        return self.subnet.split("/")[0].rsplit(".", 1)[0] + "."

    def start(self) -> None:
        self._dropin.write_text(_SSH_DROPIN)
        _podman("network", "create", "--label", self.label, "--subnet", self.subnet, self.network)

    def container(self, instance: str) -> str:
        return f"fakegce-{instance}"

    def boot(self, vm: dict[str, Any]) -> None:
        """Start the host now; the guest agent opens SSH `ssh_delay_s` later, in the background."""
        name = self.container(vm["name"])
        address = vm["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
        _podman(
            *_RUN_OPTIONS,
            "--name",
            name,
            "--hostname",
            vm["name"],
            "--label",
            self.label,
            "--network",
            self.network,
            "--ip",
            address,
            "--volume",
            f"{self._dropin}:/etc/systemd/system/ssh.service.d/fakegce.conf:ro",
            *self.extra_args,
            self.image,
        )
        self.events.append(("booted", vm["name"], time.monotonic()))
        keys = [part for pair in ssh_keys(vm) for part in pair]
        thread = threading.Thread(target=self._guest_agent, args=(vm["name"], name, keys), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guest_agent(self, instance: str, name: str, keys: list[str]) -> None:
        time.sleep(self.ssh_delay_s)
        done = subprocess.run(
            ["podman", "exec", name, "/bin/sh", "-ec", _GUEST_AGENT, "sh", *keys],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.events.append(
            ("ssh-open" if done.returncode == 0 else "agent-failed", instance, time.monotonic())
        )

    def remove(self, vm: dict[str, Any]) -> None:
        _podman("rm", "--force", "--time", "5", self.container(vm["name"]), check=False)
        self.events.append(("removed", vm["name"], time.monotonic()))

    def close(self) -> None:
        """Remove every container and the network this run made (by label), and nothing else."""
        for thread in self._threads:
            thread.join(timeout=130)
        listed = _podman(
            "ps", "--all", "--filter", f"label={self.label}", "--format", "{{.Names}}", check=False
        )
        names = listed.stdout.split()
        if names:
            _podman("rm", "--force", "--time", "5", *names, check=False)
        _podman("network", "rm", self.network, check=False)


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=180, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done
