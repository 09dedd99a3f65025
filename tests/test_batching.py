"""Batched generation: one generate for several requests, each streamed and stopped on its own."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from serving.batching import Job, stream_batch
from serving.model_config import ModelSpec
from serving.streaming import GenerationStats, stream_generate
from serving.weights import load

PROMPTS = ["Hello there", "What should I cook tonight with rice?", "Tell me about the sea"]


@pytest.fixture(scope="module")
def lm(tiny_causal: Path):
    return load(ModelSpec(source=str(tiny_causal)))


def _job(lm, prompt: str, cap: int) -> Job:
    return Job(dict(lm.tokenizer(prompt, return_tensors="pt")), cap)


async def _run(lm, jobs: list[Job], kwargs: dict):
    """Each job's text."""
    texts = [""] * len(jobs)
    async for step in stream_batch(lm, jobs, kwargs, GenerationStats()):
        for row, item in enumerate(step):
            if isinstance(item, str) and item:
                texts[row] += item
    return texts


class LeavesAfter(threading.Event):
    """A caller that is gone once its job has ``tokens`` tokens, as generate's thread sees it.

    Setting the event from the event loop after n pieces would race a tiny model, which can
    write its whole reply before the loop looks; this pins the moment of leaving.
    """

    def __init__(self, job: Job, tokens: int) -> None:
        super().__init__()
        self.job, self.tokens = job, tokens

    def is_set(self) -> bool:
        return super().is_set() or self.job.tokens >= self.tokens


def test_each_row_is_what_the_request_alone_would_get(lm):
    kwargs = {"do_sample": False, "max_new_tokens": 12, "min_new_tokens": 12, "num_beams": 1}

    async def alone(prompt: str) -> str:
        inputs = dict(lm.tokenizer(prompt, return_tensors="pt"))
        return "".join([p async for p in stream_generate(lm, inputs, kwargs)])

    singles = [asyncio.run(alone(prompt)) for prompt in PROMPTS]
    batched = asyncio.run(_run(lm, [_job(lm, p, 12) for p in PROMPTS], kwargs))
    assert batched == singles  # left padding and the attention mask change nothing


def test_every_row_keeps_its_own_cap_and_a_caller_that_leaves_stops_only_its_row(lm):
    kwargs = {"do_sample": False, "max_new_tokens": 40, "min_new_tokens": 40, "num_beams": 1}
    jobs = [_job(lm, PROMPTS[0], 5), _job(lm, PROMPTS[1], 30), _job(lm, PROMPTS[2], 30)]
    jobs[2].cancelled = LeavesAfter(jobs[2], 3)
    asyncio.run(_run(lm, jobs, kwargs))
    assert jobs[0].tokens == 5 and jobs[1].tokens == 30
    assert jobs[2].tokens <= 5  # left after 3 tokens: stopped within a token or two
