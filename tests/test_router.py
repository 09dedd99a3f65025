"""The router's guard against silent turns, with plain async streams (no Ray)."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.errors import GenerationError
from serving.router import answered, within


async def _stream(items: list[str], stall_after: int | None = None):
    for index, item in enumerate(items):
        if index == stall_after:
            await asyncio.sleep(3600)  # a replica that died: nothing more, ever
        yield item


def test_a_stream_that_keeps_answering_passes_through_whole():
    async def collect() -> list[str]:
        return [item async for item in within(_stream(["a", "b", "c"]), 1)]

    assert asyncio.run(collect()) == ["a", "b", "c"]


def test_a_stream_that_goes_quiet_ends_the_turn_with_a_coded_error():
    seen: list[str] = []

    async def collect() -> None:
        async def read() -> None:
            async for item in within(_stream(["a", "b", "c"], stall_after=2), 0.2):
                seen.append(item)

        await asyncio.wait_for(read(), 10)  # without the guard: TimeoutError, not a hang

    started = time.monotonic()
    with pytest.raises(GenerationError, match="no answer for 0 s"):
        asyncio.run(collect())
    assert seen == ["a", "b"] and time.monotonic() - started < 5


def test_a_call_that_never_answers_is_an_error_too():
    with pytest.raises(GenerationError):
        asyncio.run(answered(asyncio.sleep(3600), 0.1))
    assert asyncio.run(answered(asyncio.sleep(0, result="fr"), 1)) == "fr"


def test_a_turn_cancelled_while_waiting_leaves_no_step_behind():
    loop_errors: list[dict] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        turn = asyncio.create_task(_drain(within(_stream(["a"], stall_after=0), 60)))
        await asyncio.sleep(0.05)
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
        await asyncio.sleep(0.05)

    async def _drain(stream) -> None:
        async for _ in stream:
            pass

    asyncio.run(scenario())
    assert loop_errors == []
