"""The transformers engine: Hugging Face models (seq2seq or causal) through ``generate``.

It serves the ``seed`` profile's Blenderbot and Marian, any model on a GPU, and a GGUF file when
the config asks for it (de-quantised once, see ``serving.weights``). Concurrent requests with the
deployment's own sampling share one ``generate`` through ``@serve.batch`` (``serving.batching``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import torch
from ray import serve

from serving.batching import Job, batched_pieces, in_serve_replica, stream_batch
from serving.engine import ChatMessage, GenerationStats, Sampling, Usage
from serving.errors import GenerationError
from serving.model_config import BatchSettings, ModelSpec
from serving.streaming import stream_generate
from serving.weights import LoadedModel, load


def generate_kwargs(sampling: Sampling) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "min_new_tokens": sampling.min_new_tokens,
        "do_sample": sampling.do_sample,
        "repetition_penalty": sampling.repetition_penalty,
        "num_beams": 1,  # token streaming needs a single beam (Blenderbot defaults to 10)
    }
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
    if sampling.banned_tokens:
        kwargs["suppress_tokens"] = list(sampling.banned_tokens)
    return kwargs


class TransformersEngine:
    """One Hugging Face model; requests with the deployment's own sampling are batched."""

    name = "transformers"
    kept_prompts = 0  # every request reads its whole prompt

    def __init__(
        self,
        spec: ModelSpec,
        batching: BatchSettings,
        sampling: Sampling,
        loader: Callable[[ModelSpec], LoadedModel] = load,
    ) -> None:
        if threads := spec.decode_threads():
            torch.set_num_threads(threads)
        self.lm = loader(spec)
        self.tokenizer = self.lm.tokenizer
        self.is_encoder_decoder = self.lm.is_encoder_decoder
        self.context_limit = self.lm.context_limit
        self.sampling = sampling  # what a batch decodes with; other requests generate alone
        self.stats = GenerationStats()
        self.batching = batching.enabled and in_serve_replica()
        self._generate_batch.set_max_batch_size(batching.max_batch_size)
        self._generate_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    def encode(self, text: str, special: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def render_chat(self, messages: list[ChatMessage]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def chat_prompt(self, messages: list[ChatMessage]) -> list[int]:
        return self.encode(self.render_chat(messages), special=False)

    def _batchable(self, sampling: Sampling) -> bool:
        """A request joins the batch unless it asked for its own sampling."""
        keys = ("do_sample", "temperature", "top_p", "repetition_penalty", "banned_tokens")
        return all(getattr(sampling, key) == getattr(self.sampling, key) for key in keys)

    async def stream(
        self, prompt: list[int], sampling: Sampling, usage: Usage, stop_at_newline: bool = False
    ) -> AsyncIterator[str]:
        inputs = {
            "input_ids": torch.tensor([prompt]),
            "attention_mask": torch.ones((1, len(prompt)), dtype=torch.long),
        }
        if self.batching and self._batchable(sampling):
            pieces = batched_pieces(
                self._generate_batch, inputs, sampling.max_new_tokens, usage, stop_at_newline
            )
        else:
            pieces = stream_generate(
                self.lm, inputs, generate_kwargs(sampling), stop_at_newline, self.stats, usage
            )
        try:
            async for piece in pieces:
                yield piece
        except torch.OutOfMemoryError as exc:
            raise GenerationError(
                "The model ran out of memory; try a shorter conversation."
            ) from exc

    # max_concurrent_batches=2: a request that arrives while a batch runs starts the next batch
    # at once instead of waiting for the whole first batch to end.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005, max_concurrent_batches=2)
    async def _generate_batch(self, jobs: list[Job]) -> AsyncIterator[list[Any]]:
        """Concurrent requests, one ``generate``."""
        # The batch runs until its longest reply may end; each row stops at its own cap.
        sampling = self.sampling.capped(max(job.max_new_tokens for job in jobs))
        async for step in stream_batch(self.lm, jobs, generate_kwargs(sampling), self.stats):
            yield step

    def read_ahead(self, prompt: list[int], copies: int) -> int:
        return 0  # it keeps no prompt

    def saved(self, prompt: list[int]) -> bool:
        return False

    def probe(self) -> None:
        self.lm.probe()

    def activity(self) -> dict[str, int]:
        return self.stats.snapshot()
