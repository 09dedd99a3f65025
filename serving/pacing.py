"""Paces a stream: the first item at once, then at most one batch of items per interval.

Each piece of a reply crosses two Serve hops (ChatModel to Router, Router to the proxy) and the
socket, and each costs CPU in every process on the way. On a small CPU machine that CPU is taken
from decoding. Joining the tokens that arrive within an interval keeps the page's updates smooth
(20 a second at 50 ms) while sending fewer messages when the model is fast; a replica
streaming many replies spaces each one's pieces further (``ChatModel.interval``). The page
paces its own redraws the same way (``ui/reply_stream.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, suppress
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")
_END = object()


def join_text(pieces: list[str]) -> list[str]:
    return ["".join(pieces)]


async def paced(
    pieces: AsyncGenerator[T, None],
    interval_s: float | Callable[[], float],
    join: Callable[[list[T]], list[T]] = join_text,  # type: ignore[assignment]
    holds: Callable[[T], bool] = lambda _: True,
) -> AsyncIterator[T]:
    """``pieces``, the first as soon as it comes, each later one no sooner than ``interval_s``
    after the one before, joined (``join``) with everything that arrived in between, and the
    last as soon as the source ends, since nothing can join it. 0 changes nothing. Only what
    ``holds`` (every piece, by default) makes the next wait: the page's start event, which
    draws no text, lets the first words through at once.

    ``interval_s`` may be a function, asked before each wait: a replica's replies then share
    its messages (``ChatModel.interval``).

    The source is read in a task of its own, so it never waits on the pace. Leaving this stream
    cancels that task, which stops the source within its current step.
    """
    interval = interval_s if callable(interval_s) else lambda: interval_s
    if not callable(interval_s) and interval_s <= 0:
        async with aclosing(pieces):
            async for piece in pieces:
                yield piece
        return
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    source_ended = asyncio.Event()

    async def read() -> None:
        try:
            async with aclosing(pieces):
                async for piece in pieces:
                    arrived.put_nowait(piece)
        finally:
            arrived.put_nowait(_END)
            source_ended.set()

    reader = asyncio.create_task(read())
    try:
        sent_at = float("-inf")
        ended = False
        while not ended:
            item = await arrived.get()
            if (wait := sent_at + interval() - loop.time()) > 0 and not source_ended.is_set():
                # The last words go out as soon as the source ends: nothing follows to join them.
                with suppress(TimeoutError):
                    await asyncio.wait_for(source_ended.wait(), wait)
            texts: list[T] = []
            while True:
                if item is _END:
                    ended = True
                    break
                texts.append(item)
                if arrived.empty():
                    break
                item = arrived.get_nowait()
            if texts:
                for joined in join(texts):
                    yield joined
                if any(holds(text) for text in texts):
                    sent_at = loop.time()
        await reader  # the source's own error, after the text that came before it
    finally:
        if not reader.done():
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader


async def kept_alive(
    items: AsyncGenerator[T, None], every_s: float, sign: S
) -> AsyncIterator[T | S]:
    """``items``, with ``sign`` in between whenever none has come for ``every_s``: a model
    that is slow to start (queued behind other requests) says it is still at work.

    Leaving this stream cancels the step of ``items`` that is under way, which stops the
    source within its current step, as ``paced`` does.
    """
    step: asyncio.Future | None = None
    try:
        while True:
            if step is None:
                step = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({step}, timeout=every_s)
            if not done:
                yield sign
                continue
            finished, step = step, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if step is not None and not step.done():
            step.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        await items.aclose()
