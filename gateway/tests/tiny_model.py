"""Write a tiny random-weight llama GGUF (about 0.5 MB) for fast llama-server tests.

The answers are gibberish, but llama-server loads it in milliseconds and serves every endpoint
(chat with the template below, completions, embeddings with --embeddings) like a real model.
Usage: python tiny_model.py OUT.gguf
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

N_VOCAB, N_EMBD, N_FF, N_LAYER, N_HEAD, N_CTX = 384, 64, 128, 2, 4, 512
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>".encode())
        types.append(gguf.TokenType.BYTE)
    words = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
        "\u2581" + chr(c) for c in range(ord("a"), ord("z") + 1)
    ]
    while len(tokens) < N_VOCAB:
        tokens.append(
            words[(len(tokens) - 259) % len(words)].encode()
            + (b"" if len(tokens) < 311 else b"x" * (len(tokens) // 52))
        )
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(N_VOCAB - 259)]
    return tokens, scores, [int(t) for t in types]


def write(path: Path) -> None:
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llm-canary-tiny")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_block_count(N_LAYER)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = _vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    tensor("token_embd.weight", N_VOCAB, N_EMBD)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    tensor("output.weight", N_VOCAB, N_EMBD)
    for layer in range(N_LAYER):
        p = f"blk.{layer}"
        writer.add_tensor(f"{p}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{p}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"{p}.{name}.weight", N_EMBD, N_EMBD)
        tensor(f"{p}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"{p}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"{p}.ffn_down.weight", N_EMBD, N_FF)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    write(tmp)
    tmp.rename(out)
