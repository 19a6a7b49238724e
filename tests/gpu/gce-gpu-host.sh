#!/usr/bin/env bash
# The GPU paths of a GCE model host that the fake-GCE run (tests/infra/test_ssh_handoff.py) leaves
# unexecuted (issue 10's GPU check), in two steps, in under 10 minutes on the GPU machine:
#   tests/gpu/gce-gpu-host.sh prepare DIR   here: the exporter (roles/ai_exporter), the host checks
#       (tests/testinfra) and wheels for prometheus-client, pytest and pytest-testinfra into DIR
#       (keep DIR out of git, e.g. echo /.gpu/ >>.git/info/exclude);
#   tests/gpu/gce-gpu-host.sh run DIR       there: the exporter with ai_exporter_gpu=auto must report
#       the GPU's memory through NVML (device="gpu0", total = nvidia-smi's), and the nvidia_driver
#       host checks run with the GPU present (the driver branch nvidia-smi reports).
# Logs go to $OUT (default /tmp/gce-gpu-host). Exit 0 means the check passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
step="${1:-}" dir="${2:-.gpu}"

prepare() {
  source scripts/lib.sh && activate_venv
  mkdir -p "$dir/wheels" && dir="$(cd "$dir" && pwd)"
  cp roles/ai_exporter/files/ai_exporter.py "$dir/"
  rm -rf "$dir/testinfra" && cp -r tests/testinfra "$dir/testinfra"
  python -m pip download --quiet --only-binary=:all: --dest "$dir/wheels" \
    prometheus-client pytest pytest-testinfra || die "downloading the wheels failed"
  du -sh "$dir"
}

run() {
  local out="${OUT:-/tmp/gce-gpu-host}" port=9109 pid total_smi total_nvml branch rc=0
  mkdir -p "$out"
  exec > >(tee "$out/check.log") 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "FAIL: no GPU"; return 1; }
  python3 -m venv /tmp/gce-gpu-venv && /tmp/gce-gpu-venv/bin/pip install --quiet --no-index \
    --find-links "$dir/wheels" prometheus-client pytest pytest-testinfra || { echo "FAIL: venv"; return 1; }

  # 1. The exporter's GPU memory, as the ai_exporter role runs it with ai_exporter_gpu=auto.
  printf '{"listen_address": "127.0.0.1", "port": %s, "timeout_s": 2, "gpu": "auto", "runtimes": []}\n' \
    "$port" >"$out/config.json"
  /tmp/gce-gpu-venv/bin/python "$dir/ai_exporter.py" "$out/config.json" >"$out/exporter.log" 2>&1 &
  pid=$!
  for _ in $(seq 30); do curl -sf "http://127.0.0.1:$port/metrics" >"$out/metrics.txt" && break; sleep 1; done
  kill "$pid"
  cat "$out/exporter.log"
  grep -E '^ai_memory_(used|total)_bytes' "$out/metrics.txt"
  total_nvml=$(awk '/^ai_memory_total_bytes\{device="gpu0"\}/ {printf "%.0f", $2}' "$out/metrics.txt")
  total_smi=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 | awk '{print $1 * 1048576}')
  echo "GPU memory total: NVML via exporter ${total_nvml:-none}, nvidia-smi $total_smi"
  [ -n "$total_nvml" ] || { echo "FAIL: the exporter reports no gpu0 memory"; rc=1; }
  # nvidia-smi rounds to MiB.
  [ -n "$total_nvml" ] && [ $(( total_nvml / 1048576 )) -eq $(( total_smi / 1048576 )) ] \
    || { echo "FAIL: totals differ"; rc=1; }

  # 2. The nvidia_driver host checks on a host with a GPU (the driver here is preinstalled).
  branch=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader -i 0 | cut -d. -f1)
  (cd "$dir" && LLM_CANARY_HOST_GROUPS=ollama NVIDIA_DRIVER_BRANCH="$branch" \
    timeout 300 /tmp/gce-gpu-venv/bin/pytest -p no:cacheprovider -q -rs --hosts=local:// \
    testinfra/test_nvidia_driver.py) >"$out/testinfra.log" 2>&1
  echo "nvidia_driver host checks: rc=$?"
  tail -25 "$out/testinfra.log"
  grep -qE '[0-9]+ passed' "$out/testinfra.log" || { echo "FAIL: no host check passed"; rc=1; }
  [ $rc -eq 0 ] && echo "PASS"
  return $rc
}

case "$step" in
  prepare | run) "$step" ;;
  *) echo "usage: $0 prepare|run [DIR]" >&2; exit 2 ;;
esac
