"""A reply on its way to the page: how it is asked to end, and how often it is redrawn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from serving.events import DeltaEvent, Event
from serving.pacing import paced

# The page redraws the reply at most this often: a fast model sends 60 deltas a second, and
# each redraw renders the whole reply again in the browser (and diffs it in the UI replica).
REDRAW_INTERVAL_S = 0.1


@dataclass(eq=False)
class Halt:
    """How a running turn is asked to end: ``keep`` its partial reply (Stop) or not (Clear/Undo)."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    keep: bool = True

    def __call__(self, keep: bool) -> None:
        self.keep = keep
        self.requested.set()


def halt_all(running: set[Halt], keep: bool) -> None:
    for halt in list(running):
        halt(keep)


def join_deltas(events: list[Event]) -> list[Event]:
    """Consecutive deltas as one (their texts and English texts joined); other events as they
    are, in order."""
    joined: list[Event] = []
    for event in events:
        last = joined[-1] if joined else None
        if isinstance(event, DeltaEvent) and isinstance(last, DeltaEvent):
            english = None
            if last.text_en is not None or event.text_en is not None:
                english = (last.text_en or "") + (event.text_en or "")
            joined[-1] = DeltaEvent(text=last.text + event.text, text_en=english)
        else:
            joined.append(event)
    return joined


def redrawn(events: AsyncGenerator[Event, None]) -> AsyncIterator[Event]:
    """``events`` as the page draws them: the first words at once, then the deltas that come
    within ``REDRAW_INTERVAL_S`` of a redraw joined into the next. Only a delta redraws the
    reply: the start event, just before the first words, sets the notice and holds them back
    for nothing."""
    return paced(events, REDRAW_INTERVAL_S, join_deltas, holds=_redraws_reply)


def _redraws_reply(event: Event) -> bool:
    return isinstance(event, DeltaEvent)


async def until_halted(stream: AsyncIterator[Event], halt: Halt) -> AsyncIterator[Event]:
    """The stream's events until it ends or ``halt`` is requested; the stream is closed either way.

    Closing the stream closes its WebSocket, which cancels the request in the router.
    """
    halted = asyncio.ensure_future(halt.requested.wait())
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(stream))
            await asyncio.wait({step, halted}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return  # halted: the finally below ends the pending read
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        # Also when this turn itself is cancelled (the tab closed): end the pending read first,
        # since a stream cannot be closed while a read is running in it.
        halted.cancel()
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait({step})
        await stream.aclose()
