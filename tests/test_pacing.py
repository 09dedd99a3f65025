"""Pacing a reply's pieces: the first at once, later ones joined per interval, nothing lost,
and a listener that leaves stops the source."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from itertools import pairwise

import pytest

from serving.pacing import kept_alive, paced


async def _source(
    pieces: list[str], every_s: float, log: list[str], fail: Exception | None = None
) -> AsyncGenerator[str, None]:
    """Text that comes at a steady rate, as an engine's does; ``log`` records how it ended."""
    try:
        for piece in pieces:
            await asyncio.sleep(every_s)
            yield piece
        if fail is not None:
            raise fail
        log.append("finished")
    except (asyncio.CancelledError, GeneratorExit):
        log.append("stopped")
        raise


async def _timed(stream) -> list[tuple[float, str]]:
    started = time.monotonic()
    return [(time.monotonic() - started, piece) async for piece in stream]


WORDS = [f"w{number} " for number in range(40)]


def test_a_fast_stream_goes_out_in_fewer_pieces_no_closer_than_the_interval():
    log: list[str] = []
    out = asyncio.run(_timed(paced(_source(WORDS, 0.005, log), 0.05)))
    assert "".join(piece for _, piece in out) == "".join(WORDS)
    assert out[0][1] == WORDS[0] and out[0][0] < 0.04  # the first piece is not held back
    assert len(out) < len(WORDS) / 3
    gaps = [later[0] - earlier[0] for earlier, later in pairwise(out[:-1])]
    assert min(gaps) >= 0.045, gaps
    assert log == ["finished"]


def test_the_last_words_go_out_when_the_source_ends_not_an_interval_later():
    log: list[str] = []
    out = asyncio.run(_timed(paced(_source(WORDS[:3], 0.02, log), 0.5)))
    assert [piece for _, piece in out] == [WORDS[0], "".join(WORDS[1:3])]
    assert out[-1][0] < 0.2, out  # the source ended at about 60 ms; the interval is 500 ms


def test_a_slow_stream_goes_out_piece_by_piece_and_on_time():
    log: list[str] = []
    out = asyncio.run(_timed(paced(_source(WORDS[:6], 0.08, log), 0.05)))
    assert [piece for _, piece in out] == WORDS[:6]
    assert out[-1][0] < 6 * 0.08 + 0.1  # pacing adds no wait when tokens are slower than it


def test_no_interval_passes_every_piece_as_it_comes():
    log: list[str] = []
    out = asyncio.run(_timed(paced(_source(WORDS[:10], 0.001, log), 0)))
    assert [piece for _, piece in out] == WORDS[:10]


@pytest.mark.parametrize("interval", [0, 0.05])
def test_a_listener_that_leaves_stops_the_source_at_once(interval: float):
    log: list[str] = []

    async def leave_after_the_first_piece() -> None:
        stream = paced(_source(WORDS, 0.01, log), interval)
        assert await anext(stream) == WORDS[0]
        await stream.aclose()
        assert log == ["stopped"]

    asyncio.run(leave_after_the_first_piece())


@pytest.mark.parametrize("interval", [0, 0.05])
def test_a_listener_that_is_cancelled_stops_the_source(interval: float):
    log: list[str] = []

    async def cancelled_midway() -> None:
        async def listen() -> None:
            async for _ in paced(_source(WORDS, 0.01, log), interval):
                pass

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["stopped"]

    asyncio.run(cancelled_midway())


def test_the_sources_error_comes_after_the_text_before_it():
    log: list[str] = []
    received: list[str] = []

    async def listen() -> None:
        async for piece in paced(_source(WORDS[:5], 0.005, log, ValueError("bad")), 0.05):
            received.append(piece)

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(listen())
    assert "".join(received) == "".join(WORDS[:5])


def test_a_source_slow_to_start_says_it_is_working_and_then_runs_to_its_end():
    """A reply queued behind others: signs while nothing comes, then every piece in order."""
    log: list[str] = []

    async def collect() -> list[str]:
        return [item async for item in kept_alive(_source(["a", "b"], 0.35, log), 0.1, ".")]

    out = asyncio.run(collect())
    assert [item for item in out if item != "."] == ["a", "b"], out
    assert 2 <= out[: out.index("a")].count(".") <= 4, out  # about one sign per 0.1 s
    assert log == ["finished"]


def test_leaving_a_kept_alive_stream_while_it_waits_stops_the_source():
    log: list[str] = []

    async def leave() -> None:
        stream = kept_alive(_source(WORDS, 3600, log), 0.05, ".")
        async with aclosing(stream):
            async for item in stream:
                assert item == "."
                break
        assert log == ["stopped"]  # at once, not when the event loop ends

    asyncio.run(asyncio.wait_for(leave(), 10))
