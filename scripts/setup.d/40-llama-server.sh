#!/usr/bin/env bash
# llama-server for the test suites: a static, portable CPU build of the pinned tag from source.
# ccache lives in the shared cache, so a fresh clone rebuilds in seconds. Set
# LLAMA_SERVER_BIN_PATH to use a binary of your own instead.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT/scripts/pins.sh"
[ -n "${LLAMA_SERVER_BIN_PATH:-}" ] && exit 0
src="$CACHE_DIR/src/llama.cpp-$LLAMACPP_TAG"
out="$BUILD_DIR/llama.cpp"
flags=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF
  -DLLAMA_BUILD_NUMBER="$LLAMACPP_BUILD_NUMBER" -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_CCACHE=ON)
stamp="$out/.built-$(printf '%s ' "$LLAMACPP_TAG" "${flags[@]}" | sha256sum | cut -c1-16)"
[ -x "$out/bin/llama-server" ] && [ -f "$stamp" ] && exit 0
if [ ! -f "$src/CMakeLists.txt" ]; then
  fetch "$LLAMACPP_SDIST_URL" "$LLAMACPP_SDIST_SHA256" "$CACHE_DIR/src/llama-cpp-python.tar.gz"
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar -xzf "$CACHE_DIR/src/llama-cpp-python.tar.gz" -C "$src.tmp" --strip-components=3 \
    --wildcards '*/vendor/llama.cpp/*'
  rm -rf "$src" && mv "$src.tmp" "$src"
fi
log "build llama-server $LLAMACPP_TAG (CPU; a cold build takes ~5 min on 2 cores, ccache makes it seconds)"
cmake -S "$src" -B "$out" "${flags[@]}" >"$out.configure.log" 2>&1 || { cat "$out.configure.log"; exit 1; }
cmake --build "$out" --target llama-server -j"$(nproc)" >"$out.build.log" 2>&1 || { tail -50 "$out.build.log"; exit 1; }
rm -f "$out"/.built-* && touch "$stamp"
