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

from serving.engine import GenerationStats, Usage
from serving.weights import LoadedModel


class IncrementalDecoder:
    """Text of a growing token sequence, handed over as soon as it decodes to whole characters.

    Decodes a window of the last few tokens (the incremental detokenisation of vLLM and TGI):
    the text comes out exactly as a whole decode would give it, at a constant cost per token.
    """

    def __init__(self, tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.tokens: list[int] = []
        self.prefix_offset = 0  # decoding context starts here
        self.read_offset = 0  # text of the tokens before this one was already handed over

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=self.skip_special_tokens)

    def _hand_over(self, final: bool) -> str:
        seen = self._decode(self.tokens[self.prefix_offset : self.read_offset])
        text = self._decode(self.tokens[self.prefix_offset :])
        # U+FFFD at the end: a character split across tokens; wait for the rest of its bytes.
        if len(text) > len(seen) and (final or not text.endswith("\ufffd")):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.tokens)
            return text[len(seen) :]
        return ""

    def push(self, token: int) -> str:
        """The new text that ``token`` completes (often one word piece, sometimes nothing)."""
        self.tokens.append(token)
        return self._hand_over(final=False)

    def flush(self) -> str:
        """Whatever is still held back (a character cut short at the very end)."""
        return self._hand_over(final=True) if self.tokens else ""


class TokenStreamer(AsyncTextIteratorStreamer):
    """Hands over new text at every generated token, as soon as it decodes to whole characters.

    transformers' streamers hold symbols back until the next space and decode all the text so
    far at every step; this one uses an ``IncrementalDecoder``.
    """

    def __init__(self, tokenizer, **decode_kwargs) -> None:
        super().__init__(tokenizer, skip_prompt=True, **decode_kwargs)
        skip = decode_kwargs.get("skip_special_tokens", False)
        self.decoder = IncrementalDecoder(tokenizer, skip_special_tokens=skip)
        self.generated = 0  # tokens generated so far (the usage a client is told)

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1:
            value = value[0]  # a batch of one
        if self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        for token in value.tolist():
            self.generated += 1
            if text := self.decoder.push(token):
                self.on_finalized_text(text)

    def end(self) -> None:
        if text := self.decoder.flush():
            self.on_finalized_text(text)
        self.decoder = IncrementalDecoder(self.tokenizer, self.decoder.skip_special_tokens)
        self.next_tokens_are_prompt = True
        self.on_finalized_text("", stream_end=True)


class StopOnEvent(StoppingCriteria):
    """Ends generation for every row once ``event`` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


class CountSteps(StoppingCriteria):
    """Counts decoding steps as ``generate`` takes them (never stops anything)."""

    def __init__(self, stats: GenerationStats) -> None:
        self.stats = stats

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        self.stats.add(steps=1)
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


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
    stats: GenerationStats | None = None,
    usage: Usage | None = None,
) -> AsyncIterator[str]:
    """Yield decoded text pieces as ``generate`` produces them (counted in ``stats``).

    ``usage`` gets this request's generated token count once the stream ends.
    """
    streamer = TokenStreamer(lm.tokenizer, skip_special_tokens=True)
    cancelled = threading.Event()
    criteria: list[StoppingCriteria] = [StopOnEvent(cancelled)]
    if stop_at_newline:
        criteria.append(StopOnNewline(lm.tokenizer, inputs["input_ids"].shape[1]))
    stats = stats or GenerationStats()
    criteria.append(CountSteps(stats))
    inputs = {name: tensor.to(lm.device) for name, tensor in inputs.items()}
    failure: list[BaseException] = []

    def run() -> None:
        stats.add(active=1)
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
        finally:
            stats.add(active=-1)

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
        if usage is not None:
            usage.tokens = streamer.generated
