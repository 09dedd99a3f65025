"""Dynamic batching for generation: one ``generate`` for several requests, each still streamed.

Serve's ``@serve.batch`` gathers concurrent calls into a list of ``Job``s; ``stream_batch`` runs
one batched ``generate`` over them and yields, in lockstep, each job's new text since the last
step: ``""`` when it has none, ``StopIteration`` once it is finished (Serve's protocol for a
batched generator). A job that ends early (end of sequence, its own token cap, a newline for a
few-shot translation, or its caller gone) stops its own row; the other rows go on.

This is static batching: a batch runs until its last row ends, and requests that arrive
meanwhile form the next batch (``max_concurrent_batches`` lets that one start at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from serving.engine import GenerationStats
from serving.streaming import CountSteps, IncrementalDecoder
from serving.weights import LoadedModel


def in_serve_replica() -> bool:
    """``@serve.batch`` works only inside a Serve replica; the plain classes generate alone."""
    from ray.serve.context import _get_internal_replica_context

    return _get_internal_replica_context() is not None


@dataclass(eq=False)
class Job:
    """One request in a batch: its prompt (a batch of one), its own limits, its stop signal."""

    inputs: dict[str, torch.Tensor]
    max_new_tokens: int
    stop_at_newline: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: int = 0  # generated so far, the usage a client is told


class _Rows:
    """Per-row state, touched only by generate's thread (streamer and stopping criterion)."""

    def __init__(self, lm: LoadedModel, jobs: list[Job], emit) -> None:
        self.jobs = jobs
        self.emit = emit  # emit(row, text) or emit(row, None) when the row is finished
        self.finished = [False] * len(jobs)
        self.decoders = [IncrementalDecoder(lm.tokenizer) for _ in jobs]
        eos = lm.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos = {token for token in [*eos, lm.tokenizer.eos_token_id] if token is not None}

    def finish(self, row: int) -> None:
        if not self.finished[row]:
            self.finished[row] = True
            if text := self.decoders[row].flush():
                self.emit(row, text)
            self.emit(row, None)

    def step(self, tokens: list[int]) -> None:
        for row, token in enumerate(tokens):
            job = self.jobs[row]
            if self.finished[row]:
                continue
            if job.cancelled.is_set():
                self.finish(row)
                continue
            job.tokens += 1
            if token in self.eos:
                self.finish(row)
                continue
            text = self.decoders[row].push(token)
            if text:
                self.emit(row, text)
            if job.tokens >= job.max_new_tokens or (job.stop_at_newline and "\n" in text):
                self.finish(row)


class _BatchStreamer(BaseStreamer):
    def __init__(self, rows: _Rows) -> None:
        self.rows = rows
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call hands over the prompt (or decoder start)
            self.prompt_seen = True
            return
        self.rows.step(value.reshape(-1).tolist())

    def end(self) -> None:
        for row in range(len(self.rows.jobs)):
            self.rows.finish(row)


class _RowsDone(StoppingCriteria):
    """Stops each row once it is finished (its own cap, newline, or a caller that left)."""

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        for row, job in enumerate(self.rows.jobs):
            if job.cancelled.is_set():
                self.rows.finish(row)
        return torch.tensor(self.rows.finished, device=input_ids.device)


def pad(lm: LoadedModel, jobs: list[Job]) -> dict[str, torch.Tensor]:
    """One batch from the jobs' prompts: left padding for causal models (they continue the
    sequence's end), right padding for encoder-decoders."""
    tokenizer = lm.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "right" if lm.is_encoder_decoder else "left"
    try:
        features = [
            {
                "input_ids": job.inputs["input_ids"][0].tolist(),
                "attention_mask": job.inputs.get(
                    "attention_mask", torch.ones_like(job.inputs["input_ids"])
                )[0].tolist(),
            }
            for job in jobs
        ]
        return dict(tokenizer.pad(features, return_tensors="pt"))
    finally:
        tokenizer.padding_side = side


async def stream_batch(
    lm: LoadedModel,
    jobs: list[Job],
    generate_kwargs: dict[str, Any],
    stats: GenerationStats,
) -> AsyncIterator[list[Any]]:
    """Run ``generate`` once for all ``jobs``; yield each job's new text per step (see top)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[int | None, Any]] = asyncio.Queue()

    def emit(row: int, text: str | None) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (row, text))

    rows = _Rows(lm, jobs, emit)
    inputs = {name: tensor.to(lm.device) for name, tensor in pad(lm, jobs).items()}

    def run() -> None:
        stats.add(active=len(jobs))
        try:
            with torch.inference_mode():
                lm.model.generate(
                    **inputs,
                    **generate_kwargs,
                    streamer=_BatchStreamer(rows),
                    stopping_criteria=StoppingCriteriaList([_RowsDone(rows), CountSteps(stats)]),
                    pad_token_id=lm.tokenizer.pad_token_id,
                )
        except BaseException as exc:  # raised to every caller of the batch, never lost
            loop.call_soon_threadsafe(events.put_nowait, (None, exc))
        finally:
            stats.add(active=-len(jobs))
            loop.call_soon_threadsafe(events.put_nowait, (None, None))

    worker = loop.run_in_executor(None, run)
    count = len(jobs)
    texts, finished, stopped = [""] * count, [False] * count, [False] * count

    def take(event: tuple[int | None, Any]) -> None:
        row, payload = event
        if row is None:
            if isinstance(payload, BaseException):
                raise payload
            for index in range(count):
                finished[index] = True
        elif payload is None:
            finished[row] = True
        else:
            texts[row] += payload

    try:
        while not all(stopped):
            ready = any(
                (text or done) and not gone
                for text, done, gone in zip(texts, finished, stopped, strict=True)
            )
            if not ready:
                take(await events.get())
            while not events.empty():
                take(events.get_nowait())
            step: list[Any] = []
            for row in range(count):
                if stopped[row]:
                    step.append(StopIteration)
                elif jobs[row].cancelled.is_set():
                    # Its caller left: end its stream at once. Serve makes a new future for
                    # each step it hands over, and one made after the caller left is never read.
                    step.append(StopIteration)
                    stopped[row], texts[row] = True, ""
                elif texts[row]:
                    step.append(texts[row])
                    texts[row] = ""
                elif finished[row]:
                    step.append(StopIteration)
                    stopped[row] = True
                else:
                    step.append("")
            yield step
    finally:
        for job in jobs:  # the batch itself was abandoned: end generate within a token
            job.cancelled.set()
        await asyncio.wait({worker})


async def batched_pieces(
    batch, inputs: dict[str, torch.Tensor], max_new_tokens: int, usage, stop_at_newline=False
) -> AsyncIterator[str]:
    """One request's text through a replica's ``@serve.batch`` method ``batch`` (which runs
    ``stream_batch``); ``usage`` gets its token count. Leaving early stops its row."""
    job = Job(inputs, max_new_tokens, stop_at_newline)
    stream = batch(job)
    ended = False
    try:
        async for piece in stream:
            if piece:
                yield piece
        ended = True
    finally:
        job.cancelled.set()
        if not ended:
            # Read the row's end (within a step): Serve hands it over as a future, and one left
            # unread logs "Future exception was never retrieved ... StopAsyncIteration".
            with contextlib.suppress(Exception):
                async for _ in stream:
                    pass
        usage.tokens = job.tokens
