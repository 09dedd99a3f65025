"""The tiny Llama of ``serving.testing.tiny_models.build_causal`` as a GGUF file (llama.cpp)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

GGUF_NAME = "tiny-llama.gguf"

_LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from HF's rotate-half rotary layout to GGML's interleaved pairs."""
    # HF rotates dimension i with i + head_dim/2; llama.cpp's "llama" rope rotates 2i with 2i+1.
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def _tokens(tokenizer: dict, size: int) -> tuple[list[str], list[int]]:
    """The vocabulary in id order, with llama.cpp's token types."""
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, index in tokenizer["model"]["vocab"].items():
        tokens[index], types[index] = token, gguf.TokenType.NORMAL
    for added in tokenizer["added_tokens"]:
        # CONTROL keeps llama.cpp and transformers from splitting "<|user|>" into bytes.
        kind = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
        tokens[added["id"]], types[added["id"]] = added["content"], kind
    return tokens, [int(t) for t in types]


def _chat_template(folder: Path) -> str | None:
    """The chat template, wherever this transformers version saved it."""
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    return json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template")


def write_gguf(folder: Path, bos: bool = False) -> Path:
    """Write ``folder / "tiny-llama.gguf"`` (F32) from a saved tiny Llama and its tokenizer.

    ``bos``: llama.cpp starts every tokenised prompt with the start-of-text token, as most
    real GGUF models do (Gemma's among them); written to ``tiny-llama-bos.gguf``.
    """
    config = json.loads((folder / "config.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    weights = load_file(folder / "model.safetensors")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    rope = config.get("rope_parameters") or {}
    path = folder / (GGUF_NAME.replace(".gguf", "-bos.gguf") if bos else GGUF_NAME)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config.get("head_dim") or hidden // heads)
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    tokens, types = _tokens(tokenizer, config["vocab_size"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    # "gpt-2" is the split regex of the HF ByteLevel pre-tokenizer the tokenizer was trained with.
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        if config.get(key) is not None:
            add(config[key])
    # The HF tokenizer adds no BOS (the chat template writes what it needs); llama.cpp must agree
    # unless asked otherwise.
    writer.add_add_bos_token(bos)
    writer.add_add_eos_token(False)
    template = _chat_template(folder)
    if template:
        writer.add_chat_template(template)

    tensors = {"token_embd": weights["model.embed_tokens.weight"]}
    for i in range(layers):
        for hf, name in _LAYER_TENSORS.items():
            tensors[f"blk.{i}.{name}"] = weights[f"model.layers.{i}.{hf}.weight"]
        tensors[f"blk.{i}.attn_q"] = _permute(tensors[f"blk.{i}.attn_q"], heads)
        tensors[f"blk.{i}.attn_k"] = _permute(tensors[f"blk.{i}.attn_k"], kv_heads)
    tensors["output_norm"] = weights["model.norm.weight"]
    # A tied model has no lm_head; llama.cpp then reuses token_embd as the output projection.
    if not config.get("tie_word_embeddings") and "lm_head.weight" in weights:
        tensors["output"] = weights["lm_head.weight"]
    for name, weight in tensors.items():
        writer.add_tensor(f"{name}.weight", np.ascontiguousarray(weight, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
