"""Tiny real models, built locally in milliseconds: random weights, a tokenizer trained here.

They load through the same ``from_pretrained`` code as production, so every code path runs for
real; their text is random, so tests about what a reply says use the real offline models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BlenderbotConfig,
    BlenderbotForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from serving.config import AppConfig, deep_merge, load_config

CORPUS = [
    "Hello, how are you today? I am fine, thank you.",
    "Bonjour, comment allez-vous ? Je vais bien, merci.",
    "The weather is nice. Let us go for a walk in the park.",
    "Il fait beau. Allons nous promener dans le parc.",
    "What would you like to eat tonight? Maybe some pasta with vegetables.",
    "Qu'est-ce que tu veux manger ce soir ? Peut-être des pâtes aux légumes.",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(special: list[str]) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


SPECIAL_IDS = ("bos", "eos", "pad")


def _save(folder: Path, tokenizer, model_class: type, config_class: type, **sizes) -> Path:
    """A model of random weights and ``sizes``, for ``tokenizer``, saved with it in ``folder``."""
    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in SPECIAL_IDS}
    config = config_class(vocab_size=len(tokenizer), **ids, **sizes)
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_causal(folder: Path, positions: int = 512, heads: int = 2) -> Path:
    """A two-layer Llama with a chat template (the chat and few-shot translation paths).

    ``heads=1`` makes its one head 32 wide, as llama.cpp's 8-bit KV cache blocks need.
    """
    torch.manual_seed(0)
    tokenizer = _tokenizer(["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    width = {"hidden_size": 32, "intermediate_size": 64, "max_position_embeddings": positions}
    depth = {"num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": heads}
    return _save(folder, tokenizer, LlamaForCausalLM, LlamaConfig, **width, **depth)


def build_seq2seq(folder: Path, positions: int = 64) -> Path:
    """A tiny Blenderbot with few positions, to exercise truncation (the real one has 128)."""
    torch.manual_seed(0)
    tokenizer = _tokenizer(["<pad>", "<s>", "</s>"])
    each_side = {"layers": 1, "attention_heads": 2, "ffn_dim": 64}
    sides = {f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in each_side.items()}
    return _save(
        folder,
        tokenizer,
        BlenderbotForConditionalGeneration,
        BlenderbotConfig,
        d_model=32,
        max_position_embeddings=positions,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None,
        **sides,
    )


def tiny_config(
    causal: Path,
    seq2seq: Path,
    port: int = 8000,
    extra: dict | None = None,
    engine: str = "llama.cpp",
) -> AppConfig:
    """The offline profile's graph with tiny models: a causal chat model, and a translator
    that runs a causal model for every language and a seq2seq one for French to English.

    ``engine``: what runs the causal models. llama.cpp (the offline profile's) gets the tiny
    Llama as a GGUF file; the seq2seq model always runs on transformers.
    """
    from serving.testing.tiny_gguf import write_gguf

    small = {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}}
    generation = {"max_new_tokens": 24, "min_new_tokens": 8}
    causal_source = str(write_gguf(causal) if engine == "llama.cpp" else causal)
    # The tiny Llama's heads (16 wide) do not fit the 8-bit KV cache's blocks of 32.
    overrides = {
        "http": {"port": port},
        "chat": {
            "model": {
                "source": causal_source,
                "threads": 1,
                "engine": engine,
                "kv_cache_type": "f16",
            },
            "generation": generation,
            "deployment": small,
        },
        # One causal translator for every language and direction, as offline's Gemma, and a
        # seq2seq model of French's own to English, as seed's Marian pairs: both paths run.
        "translator": {
            "model": {
                "source": causal_source,
                "threads": 1,
                "engine": engine,
                "kv_cache_type": "f16",
            },
            "per_language": {"fr": {"to_english": {"model": {"source": str(seq2seq)}}}},
            "generation": generation,
            "deployment": small,
        },
        "detector": {"deployment": small},
        "router": {"deployment": small},
        "ui": {"deployment": small, "storage_secret": "test-secret"},
    }
    return load_config("offline", overrides=deep_merge(overrides, extra or {}))
