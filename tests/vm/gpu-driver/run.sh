#!/usr/bin/env bash
# The nvidia_driver role on a machine with a real, preinstalled NVIDIA driver (the lent GPU
# machine: Ubuntu 24.04, driver 580, read-only, no network). Checks the "driver already present"
# path (no change, nvidia-smi verification), idempotence, the verification's failure for another
# branch, and the GPU tests of tests/testinfra/test_nvidia_driver.py on the local host.
# WHEELS: a folder of Python 3.12 wheels for what the machine lacks (ansible-core, resolvelib,
# cryptography, cffi, pycparser, pytest-testinfra); $OUT receives the playbook logs.
set -uo pipefail
cd "$(dirname "$0")/../../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${WHEELS:-.gpu-nvidia/whl}"/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_FORCE_COLOR=0
echo "== platform"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release; uname -r; command -v nvidia-smi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ls /sys/module/nvidia/version 2>/dev/null && cat /sys/module/nvidia/version
echo "== run 1"; time ansible-playbook tests/vm/gpu-driver/play.yml 2>&1 | tee "$OUT/run1.log" | grep -E 'TASK|ok:|changed:|skipping:|fatal|msg|EXPECTED|PLAY RECAP|localhost *:'
echo "== run 2 (idempotence)"; ansible-playbook tests/vm/gpu-driver/play.yml 2>&1 | tee "$OUT/run2.log" | grep -E 'PLAY RECAP' -A1
echo "== testinfra GPU checks"
LLM_CANARY_HOST_GROUPS=ollama NVIDIA_DRIVER_BRANCH=580 python3 -m pytest -p no:cacheprovider -q -rs --hosts=local:// \
  tests/testinfra/test_nvidia_driver.py -k "nvidia_smi or persistence" 2>&1 | tail -15
echo "== testinfra against the wrong branch must fail"
LLM_CANARY_HOST_GROUPS=ollama NVIDIA_DRIVER_BRANCH=575 python3 -m pytest -p no:cacheprovider -q --hosts=local:// \
  tests/testinfra/test_nvidia_driver.py -k "nvidia_smi" 2>&1 | tail -3
