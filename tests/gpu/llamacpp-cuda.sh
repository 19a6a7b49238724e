#!/usr/bin/env bash
# The llamacpp role's CUDA build on a GPU machine (issues 3 and 11), in two steps:
#   tests/gpu/llamacpp-cuda.sh prepare DIR   here: render the role's build script with
#       llamacpp_cuda=true once per CUDA architecture of the GPU table (infra_accelerators in
#       group_vars/all/infra.yml: 75 T4, 80 A100, 89 L4, 90 H100), pack the pinned source
#       (models/docs left out, ~8 MB) and the tiny test model into DIR (keep DIR out of git,
#       e.g. echo /.gpu/ >>.git/info/exclude);
#   tests/gpu/llamacpp-cuda.sh run DIR       there, in under 10 minutes: the driver checks (nvidia-smi
#       answers, the loaded kernel module is the driver nvidia-smi reports, the driver runs the
#       toolkit's CUDA release), then the build with the table's architecture for this GPU (its
#       compute capability from nvidia-smi; a GPU the table lacks fails), started with -ngl 999:
#       its log must say "offloaded N/N layers to GPU" and name CUDA0, and a completion comes back.
# Needs on the GPU machine: an NVIDIA GPU with its driver, the CUDA toolkit (nvcc on the PATH, or
# /usr/local/cuda as the cuda_toolkit role makes it; the machine may have no network, so the
# toolkit's install from NVIDIA's repository is tested by Molecule's stand-in, not here), cmake,
# a C++ compiler, curl. Logs go to $OUT (default /tmp/llamacpp-cuda). Exit 0 means the check passed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
step="${1:-}" dir="${2:-.gpu}"

prepare() {
  source scripts/lib.sh && activate_venv
  source scripts/pins.sh
  mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
  local arch archs
  archs="$(python -c 'import sys, yaml; t = yaml.safe_load(open(sys.argv[1]))["infra_accelerators"]
print(" ".join(sorted({row["cuda_architecture"] for row in t.values()})))' group_vars/all/infra.yml)" \
    || die "reading infra_accelerators failed"
  for arch in $archs; do
    ansible localhost -m ansible.builtin.template \
      -a "src=roles/llamacpp/templates/build-llama-server.sh.j2 dest=$dir/build-llama-server-$arch.sh mode=0755" \
      -e @roles/llamacpp/defaults/main.yml -e @roles/llamacpp/vars/main.yml \
      -e "{\"llamacpp_cuda\": true, \"llamacpp_cuda_architectures\": \"$arch\"}" >/dev/null || die "rendering failed"
  done
  echo "$archs" >"$dir/architectures"
  tar -C "$CACHE_DIR/src/llama.cpp-$LLAMACPP_TAG" --exclude=./models --exclude=./docs --exclude=./media \
    --exclude=./tools/ui/tests --exclude=./vendor/llama.cpp --exclude=./.github --exclude=./gguf-py \
    -cJf "$dir/llama.cpp-src.tar.xz" . || die "packing the pinned source failed (make setup fetches it)"
  cp "$BUILD_DIR/models/llm-canary-tiny.gguf" "$dir/model.gguf" || die "no tiny test model (make setup makes it)"
  du -sh "$dir"
}

run() {
  local out="${OUT:-/tmp/llamacpp-cuda}" port=8089 start rc pid arch smi_driver module_driver driver_cuda nvcc_cuda offload
  mkdir -p "$out"
  exec > >(tee "$out/check.log") 2>&1
  # 1. The driver: nvidia-smi answers, the loaded module is its driver, and it runs the toolkit's release.
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader \
    || { echo "FAIL: nvidia-smi finds no GPU"; return 1; }
  smi_driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader -i 0)"
  module_driver="$(cat /sys/module/nvidia/version 2>/dev/null)"
  echo "driver: nvidia-smi $smi_driver, kernel module ${module_driver:-not loaded}"
  [ "$smi_driver" = "$module_driver" ] || { echo "FAIL: the loaded kernel module is not the driver nvidia-smi reports"; return 1; }
  export CUDACXX="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
  [ -x "$CUDACXX" ] || { echo "FAIL: no nvcc (set CUDACXX, or install the toolkit at /usr/local/cuda)"; return 1; }
  nvcc_cuda="$("$CUDACXX" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\),.*/\1/p')"
  driver_cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p')"
  echo "CUDA: toolkit $nvcc_cuda ($CUDACXX), driver supports up to $driver_cuda"
  [ "$(printf '%s\n%s\n' "$nvcc_cuda" "$driver_cuda" | sort -V | tail -1)" = "$driver_cuda" ] \
    || { echo "FAIL: driver CUDA $driver_cuda is older than the toolkit's $nvcc_cuda"; return 1; }

  # 2. The table's architecture for this GPU: its compute capability, 7.5 -> 75.
  arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 | tr -d '. ')"
  grep -qw "$arch" "$dir/architectures" \
    || { echo "FAIL: compute capability $arch is in no row of infra_accelerators ($(cat "$dir/architectures"))"; return 1; }
  rm -rf /tmp/llamacpp-src && mkdir -p /tmp/llamacpp-src && tar -xJf "$dir/llama.cpp-src.tar.xz" -C /tmp/llamacpp-src
  start=$(date +%s)
  LLAMACPP_SRC_DIR=/tmp/llamacpp-src LLAMACPP_BUILD_DIR=/tmp/llamacpp-build LLAMACPP_INSTALL_DIR=/tmp/llamacpp \
    sh "$dir/build-llama-server-$arch.sh" >"$out/build.log" 2>&1
  rc=$?
  echo "build for architecture $arch: rc=$rc in $(( $(date +%s) - start )) s on $(nproc) cores"
  [ $rc -eq 0 ] || { tail -40 "$out/build.log"; return 1; }
  cat /tmp/llamacpp/BUILD-INFO
  grep -q -- "-DCMAKE_CUDA_ARCHITECTURES=$arch" /tmp/llamacpp/BUILD-INFO \
    || { echo "FAIL: not built for architecture $arch"; return 1; }

  # 3. Every layer on the GPU (-ngl 999, as llamacpp_gpu_layers with llamacpp_cuda), and an answer.
  /tmp/llamacpp/bin/llama-server -m "$dir/model.gguf" --host 127.0.0.1 --port $port -ngl 999 -c 512 \
    >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
  curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
    -d '{"prompt":"Hello","max_tokens":16,"temperature":0}' >"$out/completion.json"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
  kill "$pid"
  grep -E "CUDA0|offloaded" "$out/server.log" | head -5
  grep -q "CUDA0" "$out/server.log" || { echo "FAIL: no layer on CUDA0"; return 1; }
  offload="$(sed -n 's/.*offloaded \([0-9]*\)\/\([0-9]*\) layers to GPU.*/\1 \2/p' "$out/server.log" | head -1)"
  # shellcheck disable=SC2086 # two numbers, split on purpose
  [ -n "$offload" ] && [ "$(echo $offload | cut -d' ' -f1)" = "$(echo $offload | cut -d' ' -f2)" ] \
    || { echo "FAIL: not every layer offloaded (${offload:-no offload line})"; return 1; }
  grep -q '"completion_tokens":16' "$out/completion.json" || { echo "FAIL: no completion"; return 1; }
  echo "PASS"
}

case "$step" in
  prepare | run) "$step" ;;
  *) echo "usage: $0 prepare|run [DIR]" >&2; exit 2 ;;
esac
