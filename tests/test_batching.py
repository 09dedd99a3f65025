"""Batched generation: one generate for several requests, each streamed and stopped on its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.batching import Job, stream_batch
from serving.config import ModelSpec
from serving.streaming import GenerationStats, stream_generate
from serving.weights import load

PROMPTS = ["Hello there", "What should I cook tonight with rice?", "Tell me about the sea"]


@pytest.fixture(scope="module")
def lm(tiny_causal: Path):
    return load(ModelSpec(source=str(tiny_causal)))


def _job(lm, prompt: str, cap: int) -> Job:
    return Job(dict(lm.tokenizer(prompt, return_tensors="pt")), cap)


async def _run(lm, jobs: list[Job], kwargs: dict, leave: dict[int, int] | None = None):
    """Each job's text; ``leave[row] = n``: that row's caller leaves after n pieces."""
    texts = [""] * len(jobs)
    pieces = [0] * len(jobs)
    async for step in stream_batch(lm, jobs, kwargs, GenerationStats()):
        for row, item in enumerate(step):
            if isinstance(item, str) and item:
                texts[row] += item
                pieces[row] += 1
                if leave and pieces[row] == leave.get(row):
                    jobs[row].cancelled.set()
    return texts


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
    asyncio.run(_run(lm, jobs, kwargs, leave={2: 3}))
    assert jobs[0].tokens == 5 and jobs[1].tokens == 30
    assert jobs[2].tokens <= 5  # left after 3 pieces: stopped within a token or two
