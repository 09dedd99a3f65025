"""Load Hugging Face weights for the transformers engine (``serving.torch_engine``).

GGUF files that this engine runs (on a GPU, or by choice) are de-quantised on load, which takes
minutes on a small CPU; the result is saved once as safetensors under a cache folder keyed by the
file's SHA-256, and later starts load from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from serving.cache import cache_root
from serving.errors import ModelUnavailableError
from serving.locate import Located, locate
from serving.model_config import ModelSpec

# Serve shows its own logger's INFO lines in the console of `make run`/`serve run`: start-up
# progress (conversion, loading) must be seen there.
logger = logging.getLogger("ray.serve")


@dataclass
class LoadedModel:
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    device: torch.device
    is_encoder_decoder: bool

    @property
    def context_limit(self) -> int:
        """Longest input the model accepts, in tokens."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", None)
        return limit if isinstance(limit, int) and limit < 1_000_000 else 2048

    def probe(self) -> None:
        """One forward pass on a fixed input; raises when the model gives no usable output.

        Serve's health check calls this: a replica whose weights or device went bad (NaNs, a
        lost GPU) fails it and is replaced. A few milliseconds for the small models here.
        """
        inputs = self.tokenizer("Hello", return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {}
        if self.is_encoder_decoder:
            start = self.model.config.decoder_start_token_id or 0
            kwargs["decoder_input_ids"] = torch.tensor([[start]], device=self.device)
        try:
            with torch.inference_mode():
                logits = self.model(**inputs, **kwargs).logits
        except RuntimeError as exc:
            raise ModelUnavailableError(f"The model fails a forward pass: {exc}") from exc
        if not torch.isfinite(logits).all():
            raise ModelUnavailableError("The model's output is not finite (NaN or inf).")


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    if spec.dtype != "auto":
        return getattr(torch, spec.dtype)
    return torch.float16 if device.type == "cuda" else torch.float32


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _converted_gguf(located: Located) -> Path:
    """The GGUF file de-quantised to safetensors, converting it once under a file lock."""
    gguf_path = Path(located.path) / located.gguf_file
    target = cache_root() / "converted" / _sha256(gguf_path)[:24]
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second replica waits for the first conversion
        if (target / "config.json").exists():
            return target
        logger.info(
            "Converting %s once (de-quantising GGUF; minutes on a small CPU)...", gguf_path.name
        )
        started = time.monotonic()
        kwargs: dict[str, Any] = {"gguf_file": located.gguf_file}
        logger.info("[1/3] %s: reading the tokenizer", gguf_path.name)
        tokenizer = AutoTokenizer.from_pretrained(located.path, **kwargs)
        logger.info("[2/3] %s: de-quantising the weights (the long step)", gguf_path.name)
        model = _model_class(located.path, kwargs).from_pretrained(
            located.path, dtype=torch.float32, **kwargs
        )
        logger.info(
            "[3/3] %s: saving to the cache (%.0f s so far)",
            gguf_path.name,
            time.monotonic() - started,
        )
        # The weights are plain float32 now; drop the GGUF marker that forbids saving them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target) if not target.exists() else shutil.rmtree(staging)
        logger.info(
            "Converted %s in %.0f s; cached in %s",
            gguf_path.name,
            time.monotonic() - started,
            target,
        )
    return target


def _model_class(path: str, kwargs: dict[str, Any]) -> type:
    config = AutoConfig.from_pretrained(path, **kwargs)
    return AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM


def load(spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
    """Load tokenizer and model for inference on ``device`` (GPU when there is one)."""
    device = device or pick_device()
    started = time.monotonic()
    located = locate(spec)
    path = str(_converted_gguf(located)) if located.gguf_file else located.path
    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot load model {spec.source!r}: {exc}") from None
    seq2seq = config.is_encoder_decoder if spec.kind == "auto" else spec.kind == "seq2seq"
    model_cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = model_cls.from_pretrained(path, dtype=_dtype(spec, device)).to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info(
        "Loaded %s (%s) on %s in %.1f s",
        spec.source,
        "seq2seq" if seq2seq else "causal",
        device,
        time.monotonic() - started,
    )
    return LoadedModel(tokenizer, model, device, seq2seq)
