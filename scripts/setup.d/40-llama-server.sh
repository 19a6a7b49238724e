#!/usr/bin/env bash
# setup: up
# llama-server for the test suites and the local target: a static, portable CPU build of the
# pinned tag from source, laid out and configured exactly as roles/llamacpp builds it on a host
# (<prefix>/src/<tag>, <prefix>/build/<id>, the same CMake flags, ccache base_dir = <prefix>), so
# the hosts under podman (Molecule, `make up`), which share this ccache, rebuild in seconds.
# Set LLAMA_SERVER_BIN_PATH to use a binary of your own instead.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT/scripts/pins.sh"
[ -n "${LLAMA_SERVER_BIN_PATH:-}" ] && exit 0
prefix="$BUILD_DIR/llama.cpp-prefix"
src="$prefix/src/$LLAMACPP_TAG"
build="$prefix/build/$LLAMACPP_TAG"
out="$BUILD_DIR/llama.cpp"
# roles/llamacpp/vars/main.yml __llamacpp_cmake_flags with llamacpp_cuda false, native false.
flags=(-GNinja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_CCACHE=ON
  -DGGML_CUDA=OFF -DLLAMA_BUILD_NUMBER="$LLAMACPP_BUILD_NUMBER" -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF)
stamp="$out/.built-$(printf '%s ' "$LLAMACPP_TAG" "${flags[@]}" | sha256sum | cut -c1-16)"
[ -x "$out/bin/llama-server" ] && [ -f "$stamp" ] && exit 0
if [ ! -f "$src/CMakeLists.txt" ]; then
  fetch "$LLAMACPP_SDIST_URL" "$LLAMACPP_SDIST_SHA256" "$CACHE_DIR/src/llama-cpp-python.tar.gz"
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar -xzf "$CACHE_DIR/src/llama-cpp-python.tar.gz" -C "$src.tmp" --strip-components=3 \
    --wildcards '*/vendor/llama.cpp/*'
  rm -rf "$src" && mv "$src.tmp" "$src"
fi
# As in roles/llamacpp/templates/build-llama-server.sh.j2: paths relative to the prefix, the
# compiler checked by content, so a host's build and this one share cache entries.
export CCACHE_BASEDIR="$prefix" CCACHE_COMPILERCHECK=content CCACHE_NOHASHDIR=1
log "build llama-server $LLAMACPP_TAG (CPU; a cold build takes ~5 min on 2 cores, ccache makes it seconds)"
mkdir -p "$build" "$out/bin"
cmake -S "$src" -B "$build" "${flags[@]}" >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" --target llama-server -j"$(nproc)" >"$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
install -m 0755 "$build/bin/llama-server" "$out/bin/llama-server"
rm -f "$out"/.built-* && touch "$stamp"
