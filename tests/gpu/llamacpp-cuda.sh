#!/usr/bin/env bash
# The llamacpp role's CUDA build on a GPU machine (issue 3's GPU check), in two steps:
#   tests/gpu/llamacpp-cuda.sh prepare DIR   here: render the role's build script with
#       llamacpp_cuda=true (architecture 90), pack the pinned source (models/docs left out, ~8 MB)
#       and the tiny test model into DIR (keep DIR out of git, e.g. echo /.gpu/ >>.git/info/exclude);
#   tests/gpu/llamacpp-cuda.sh run DIR       there: build llama-server with that script, start it
#       with every layer offloaded, require the CUDA0 device in its log and a completion back.
# Logs go to $OUT (default /tmp/llamacpp-cuda). Exit 0 means the check passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
step="${1:-}" dir="${2:-.gpu}"

prepare() {
  source scripts/lib.sh && activate_venv
  source scripts/pins.sh
  mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
  ansible localhost -m ansible.builtin.template \
    -a "src=roles/llamacpp/templates/build-llama-server.sh.j2 dest=$dir/build-llama-server.sh mode=0755" \
    -e @roles/llamacpp/defaults/main.yml -e @roles/llamacpp/vars/main.yml \
    -e '{"llamacpp_cuda": true, "llamacpp_cuda_architectures": "90"}' >/dev/null || die "rendering failed"
  tar -C "$CACHE_DIR/src/llama.cpp-$LLAMACPP_TAG" --exclude=./models --exclude=./docs --exclude=./media \
    --exclude=./tools/ui/tests --exclude=./vendor/llama.cpp --exclude=./.github --exclude=./gguf-py \
    -cJf "$dir/llama.cpp-src.tar.xz" .
  cp "$BUILD_DIR/models/llm-canary-tiny.gguf" "$dir/model.gguf"
  du -sh "$dir"
}

run() {
  local out="${OUT:-/tmp/llamacpp-cuda}" port=8089 start rc pid
  mkdir -p "$out"
  exec > >(tee "$out/check.log") 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  export CUDACXX="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
  rm -rf /tmp/llamacpp-src && mkdir -p /tmp/llamacpp-src && tar -xJf "$dir/llama.cpp-src.tar.xz" -C /tmp/llamacpp-src
  start=$(date +%s)
  LLAMACPP_SRC_DIR=/tmp/llamacpp-src LLAMACPP_BUILD_DIR=/tmp/llamacpp-build LLAMACPP_INSTALL_DIR=/tmp/llamacpp \
    sh "$dir/build-llama-server.sh" >"$out/build.log" 2>&1
  rc=$?
  echo "build: rc=$rc in $(( $(date +%s) - start )) s on $(nproc) cores"
  [ $rc -eq 0 ] || { tail -40 "$out/build.log"; return 1; }
  cat /tmp/llamacpp/BUILD-INFO
  /tmp/llamacpp/bin/llama-server -m "$dir/model.gguf" --host 127.0.0.1 --port $port -ngl 999 -c 512 \
    >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
  curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
    -d '{"prompt":"Hello","max_tokens":16,"temperature":0}' >"$out/completion.json"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
  kill "$pid"
  grep -E "CUDA0" "$out/server.log" | head -3
  grep -q "CUDA0" "$out/server.log" || { echo "FAIL: no layer on CUDA0"; return 1; }
  grep -q '"completion_tokens":16' "$out/completion.json" || { echo "FAIL: no completion"; return 1; }
  echo "PASS"
}

case "$step" in
  prepare | run) "$step" ;;
  *) echo "usage: $0 prepare|run [DIR]" >&2; exit 2 ;;
esac
