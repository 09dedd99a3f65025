"""Stream text out of ``model.generate`` and stop it when the caller goes away.

``generate`` blocks, so it runs in a worker thread and feeds an ``AsyncTextIteratorStreamer``.
Serve cancels the request's coroutine when a client disconnects, but that does not stop the
thread: a stopping criterion watches an event that is set when the consumer stops listening.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import torch
from transformers import AsyncTextIteratorStreamer, StoppingCriteria, StoppingCriteriaList

from serving.weights import LoadedModel


class StopOnEvent(StoppingCriteria):
    """Ends generation for every row once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


class StopOnNewline(StoppingCriteria):
    """Ends a few-shot completion at the end of its line (batch of one)."""

    def __init__(self, tokenizer, prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        done = input_ids.shape[1] > self.prompt_length and "\n" in self.tokenizer.decode(
            input_ids[0, -1:]
        )
        return torch.full((input_ids.shape[0],), done, device=input_ids.device)


async def stream_generate(
    lm: LoadedModel,
    inputs: dict[str, torch.Tensor],
    generate_kwargs: dict[str, Any],
    stop_at_newline: bool = False,
) -> AsyncIterator[str]:
    """Yield decoded text pieces as ``generate`` produces them."""
    streamer = AsyncTextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
    cancelled = threading.Event()
    criteria: list[StoppingCriteria] = [StopOnEvent(cancelled)]
    if stop_at_newline:
        criteria.append(StopOnNewline(lm.tokenizer, inputs["input_ids"].shape[1]))
    inputs = {name: tensor.to(lm.device) for name, tensor in inputs.items()}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                lm.model.generate(
                    **inputs,
                    **generate_kwargs,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList(criteria),
                    pad_token_id=lm.tokenizer.pad_token_id,
                )
        except BaseException as exc:  # surfaced to the consumer below, never lost in the thread
            failure.append(exc)
            streamer.end()

    worker = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        async for piece in streamer:
            if piece:
                yield piece
        await worker
        if failure:
            raise failure[0]
    finally:
        cancelled.set()  # consumer left early (disconnect, stop): end generate within a token
