"""Stop sequences (the OpenAI API's ``stop``): a reply ends before the first one it writes.

The text is cut in the chat model's replica, on the engine's own pieces, so both engines keep
the same contract: the reply holds none of the sequence, the engine stops within a token of
writing it (as when a caller leaves), and its usage counts the tokens it wrote. A piece that
ends with the start of a sequence is held back until the next one says whether it goes on.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing


class StopSequences:
    """Cuts a text fed piece by piece before the first of ``sequences`` that it contains."""

    def __init__(self, sequences: Sequence[str]) -> None:
        self.sequences = [sequence for sequence in sequences if sequence]
        self.matched = False  # the text reached a sequence: nothing more is passed on
        self._held = ""  # the end of the text so far that may be the start of a sequence

    def feed(self, piece: str) -> str:
        """What of ``piece`` (after what was held back) can go out now."""
        if self.matched:
            return ""
        text = self._held + piece
        found = [index for s in self.sequences if (index := text.find(s)) >= 0]
        if found:
            self.matched, self._held = True, ""
            return text[: min(found)]
        held = max((self._started(text, s) for s in self.sequences), default=0)
        self._held = text[len(text) - held :] if held else ""
        return text[: len(text) - held]

    def flush(self) -> str:
        """What was held back, once the text has ended without the sequence it started."""
        held, self._held = self._held, ""
        return held

    @staticmethod
    def _started(text: str, sequence: str) -> int:
        """The length of the longest end of ``text`` that starts ``sequence`` (not all of it)."""
        for size in range(min(len(text), len(sequence) - 1), 0, -1):
            if sequence.startswith(text[-size:]):
                return size
        return 0

    async def cut(self, pieces: AsyncGenerator[str, None]) -> AsyncIterator[str]:
        """``pieces`` up to the first sequence; reaching it closes ``pieces``, which stops
        the engine's request."""
        async with aclosing(pieces):
            async for piece in pieces:
                if text := self.feed(piece):
                    yield text
                if self.matched:
                    return
        if rest := self.flush():
            yield rest
