#!/usr/bin/env bash
# The nvidia_driver role on a machine with a real, preinstalled NVIDIA driver (the lent GPU
# machine: Ubuntu 24.04, driver 580, read-only, no network). Checks the "driver already present"
# path (no change, nvidia-smi verification), idempotence, the verification's failure for another
# branch, and the GPU tests of tests/testinfra/test_nvidia_driver.py on the local host.
# WHEELS: a folder of Python 3.12 wheels for what the machine lacks (ansible-core, resolvelib,
# cryptography, cffi, pycparser, pytest-testinfra; `pip download --only-binary=:all: --python-version 3.12
# -d .gpu-nvidia/whl ...` makes it here); $OUT receives the logs. Exits non-zero if any check fails.
set -uo pipefail
cd "$(dirname "$0")/../../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${WHEELS:-.gpu-nvidia/whl}"/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_FORCE_COLOR=0
echo "== platform"; grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release; uname -r; command -v nvidia-smi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
ls /sys/module/nvidia/version 2>/dev/null && cat /sys/module/nvidia/version
failed=0
check() { if [ "$1" = 0 ]; then echo "PASS: $2"; else echo "FAIL: $2"; failed=1; fi; }
echo "== run 1"
ansible-playbook tests/vm/gpu-driver/play.yml >"$OUT/run1.log" 2>&1; check $? "run 1 (incl. the wrong branch failing, naming nvidia_driver_branch)"
grep -E 'TASK|ok:|changed:|skipping:|fatal|msg|EXPECTED|PLAY RECAP|localhost *:' "$OUT/run1.log"
echo "== run 2 (idempotence)"
ansible-playbook tests/vm/gpu-driver/play.yml >"$OUT/run2.log" 2>&1; check $? "run 2"
grep -E 'PLAY RECAP' -A1 "$OUT/run2.log"
grep -qE 'localhost +: .*changed=0 ' "$OUT/run2.log"; check $? "run 2 reports changed=0"
echo "== testinfra GPU checks"
LLM_CANARY_HOST_GROUPS=ollama NVIDIA_DRIVER_BRANCH=580 python3 -m pytest -p no:cacheprovider -q -rs --hosts=local:// \
  tests/testinfra/test_nvidia_driver.py -k "nvidia_smi or persistence" >"$OUT/testinfra.log" 2>&1; check $? "testinfra GPU checks"
tail -15 "$OUT/testinfra.log"
echo "== testinfra against the wrong branch must fail"
LLM_CANARY_HOST_GROUPS=ollama NVIDIA_DRIVER_BRANCH=575 python3 -m pytest -p no:cacheprovider -q --hosts=local:// \
  tests/testinfra/test_nvidia_driver.py -k "nvidia_smi" >"$OUT/testinfra-wrong.log" 2>&1
[ $? = 1 ]; check $? "testinfra fails against branch 575"
tail -3 "$OUT/testinfra-wrong.log"
exit $failed
