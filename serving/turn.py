"""One chat turn: detect the language, translate to English, chat, translate back, streaming.

``TurnPipeline`` is plain asyncio: it takes its models as an object with four methods
(``TurnModels``), so the router gives it the deployment handles (``serving.model_handles``) and
the unit tests give it models that run in the test's own process.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, Protocol, TypeVar

from serving.config import RouterSettings
from serving.errors import GenerationError
from serving.events import (
    ChatItem,
    ChatReply,
    DeltaEvent,
    Detection,
    DoneEvent,
    Event,
    StartEvent,
    Usage,
    Working,
)
from serving.languages import ENGLISH
from serving.protocol import ChatRequest, HistoryEntry
from serving.sentences import Segment, SentenceBuffer, Verbatim, separator_after

T = TypeVar("T", covariant=True)

# English versions of texts in the users' languages that this replica has seen (OpenAI clients
# send their history in the user's language), with their language: a conversation's history is
# translated once, not at every turn.
ENGLISH_CACHE_SIZE = 4096


class Stream(Protocol[T]):
    """A model's streamed answer that its caller can stop (a Serve handle's response is one)."""

    def __aiter__(self) -> AsyncIterator[T]: ...

    def cancel(self) -> None: ...


class TurnModels(Protocol):
    async def detect(self, text: str, conversation: str | None = None) -> Detection:
        """The language the turn speaks (a served one, or English), and why when English;
        a text too short to tell is read in ``conversation``'s language, if it is English or
        served."""

    async def to_english(self, text: str, language: str) -> str:
        """A text in ``language`` (a served one) in English, whole."""

    def to_user(self, sentence: str, language: str) -> Stream[str | Working]:
        """One English sentence in ``language``, piece by piece (``Working`` while the model
        has none: it is alive, only slow)."""

    def chat(self, history: list[dict], message: str, options: dict | None) -> Stream[ChatItem]:
        """The chat model's reply: a ``PromptInfo``, text pieces (``Working`` while there is
        none), a ``ReplyInfo``."""


class TurnObserver(Protocol):
    """Where a turn reports what it measured (``serving.metrics.ChatMetrics``)."""

    def turn(self, language: str, api: str) -> None: ...

    def first_text(self, seconds: float, language: str) -> None: ...

    def translated(self, seconds: float, direction: str) -> None: ...

    def generated(self, tokens: int) -> None: ...


def _silent(seconds: float) -> GenerationError:
    return GenerationError(f"A model gave no answer for {seconds:.0f} s. Try again in a moment.")


async def answered(response: Awaitable[Any], seconds: float) -> Any:
    """A model call's result, or ``GenerationError`` after ``seconds`` of waiting."""
    try:
        return await asyncio.wait_for(response, seconds)
    except asyncio.TimeoutError:
        raise _silent(seconds) from None


def _retrieve(task: asyncio.Future) -> None:
    """Read a left-behind step's end, so that asyncio logs no 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()


async def within(stream: AsyncIterator[Any], seconds: float) -> AsyncIterator[Any]:
    """``stream``'s items, failing the turn when the next one takes longer than ``seconds``.

    A handle request to a replica that died, or that waits for a replica that never comes, can
    otherwise wait for ever: a client must get its reply or an error, never silence. A model
    that is only slow (its request queued behind others) sends ``Working`` meanwhile, which
    restarts the wait like any item (``ChatReply`` skips it).
    """
    stream = aiter(stream)
    while True:
        step = asyncio.ensure_future(anext(stream))
        try:
            done, _ = await asyncio.wait({step}, timeout=seconds)
        finally:
            if not step.done():  # timed out, or this turn was cancelled meanwhile
                step.cancel()
                step.add_done_callback(_retrieve)
        if not done:
            raise _silent(seconds)
        try:
            item = step.result()
        except StopAsyncIteration:
            return
        yield item


def english_separator(previous: Segment) -> str:
    """Between two English segments as the chat model wrote them (a line end is kept, and
    code carries its own)."""
    return "" if isinstance(previous, Verbatim) or previous.endswith("\n") else " "


class TurnPipeline:
    """Runs turns on ``models``; ``run`` yields a turn's events, start to done."""

    def __init__(
        self, models: TurnModels, settings: RouterSettings, observer: TurnObserver
    ) -> None:
        self.models = models
        self.settings = settings
        self.observer = observer
        self._english: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    async def run(
        self, request: ChatRequest, api: str, options: dict[str, Any] | None = None
    ) -> AsyncIterator[Event]:
        """Events of one turn: start, deltas in the user's language, done.

        ``api`` tags the metrics; ``options`` are a client's decoding options (OpenAI API).
        Leaving the loop early (a client gone) stops the models' streams.
        """
        started = time.monotonic()
        silence = self.settings.model_silence_s
        detected = self.models.detect(request.message, request.language)
        detection: Detection = await answered(detected, silence)
        language = detection.language
        self.observer.turn(language, api)
        message_en = request.message
        translated = language != ENGLISH  # the detector names a served language or English
        if translated:
            asked = time.monotonic()
            message_en = await answered(self.models.to_english(message_en, language), silence)
            self.observer.translated(time.monotonic() - asked, f"{language}-en")
        history = [entry.model_dump() for entry in request.history]
        stream = self.models.chat(history, message_en, options)
        reply = ChatReply(within(stream, silence))
        reply_en: list[str] = []
        shown: list[str] = []
        try:
            prompt = await reply.prompt()
            yield StartEvent(
                language=language,
                message_en=message_en,
                history_dropped=prompt.history_dropped,
                heard=detection.heard,
                reason=detection.reason,
            )
            deltas = (
                self._to_user(reply.texts(), reply_en, language)
                if translated
                else self._relay(reply.texts(), reply_en)
            )
            async with aclosing(deltas):
                async for delta in deltas:
                    if not shown:
                        self.observer.first_text(time.monotonic() - started, language)
                    shown.append(delta.text)
                    yield delta
        except BaseException:
            # The client left or a step failed: a handle stream is not cancelled by our own
            # cancellation, so stop the chat model's generation explicitly.
            stream.cancel()
            raise
        end = reply.end
        self.observer.generated(end.completion_tokens)
        text, text_en = "".join(shown).strip(), "".join(reply_en).strip()
        if translated:
            self._remember(request.message, message_en, detection.told)
            self._remember(text, text_en, language)
        yield DoneEvent(
            reply=text,
            reply_en=text_en,
            message_en=message_en,
            language=language,
            history_dropped=prompt.history_dropped,
            usage=Usage(
                prompt_tokens=prompt.prompt_tokens,
                completion_tokens=end.completion_tokens,
                total_tokens=prompt.prompt_tokens + end.completion_tokens,
            ),
            finish_reason=end.finish_reason,
        )

    async def in_english(self, request: ChatRequest) -> ChatRequest:
        """An OpenAI client's turn, whose history is in the user's language, as the model reads
        it: each entry in English, and the conversation's language, that of the latest entry
        whose text told its language (a served one, or English)."""
        entries = request.history
        read = list(await asyncio.gather(*(self._to_english(entry.content) for entry in entries)))
        # An entry too short to tell ("Oui") went on in the language of the conversation
        # before it, as its own turn did: it is read again in that language.
        again: list[tuple[int, str]] = []
        language = None
        for index, (_, told) in enumerate(read):
            if told is None and language not in (None, ENGLISH):
                again.append((index, language))
            language = told or language
        found = await asyncio.gather(
            *(self._to_english(entries[index].content, before) for index, before in again)
        )
        for (index, _), english in zip(again, found, strict=True):
            read[index] = english
        history = [
            HistoryEntry(role=entry.role, content=english)
            for entry, (english, _) in zip(entries, read, strict=True)
        ]
        return request.model_copy(
            update={"history": history, "language": language or request.language}
        )

    def _remember(self, text: str, english: str, language: str | None) -> None:
        """``language``: the text's, where it alone told it."""
        self._english[text] = (english, language)
        self._english.move_to_end(text)
        while len(self._english) > ENGLISH_CACHE_SIZE:
            self._english.popitem(last=False)

    async def _to_english(
        self, text: str, conversation: str | None = None
    ) -> tuple[str, str | None]:
        """A history entry in English (known already, detected English, or translated), and
        its language where its text tells it; one too short to tell is read in
        ``conversation``'s."""
        if (known := self._english.get(text)) is not None:
            return known
        if not text.strip():
            return text, None
        detection = await self.models.detect(text, conversation)
        if detection.language == ENGLISH:
            return text, detection.told
        english = await self.models.to_english(text, detection.language)
        self._remember(text, english, detection.told)
        return english, detection.told

    @staticmethod
    async def _relay(english: AsyncIterator[str], sink: list[str]) -> AsyncIterator[DeltaEvent]:
        async for piece in english:
            if not sink:
                piece = piece.lstrip()
            sink.append(piece)
            if piece:
                yield DeltaEvent(text=piece)

    async def _to_user(
        self, english: AsyncIterator[str], sink: list[str], language: str
    ) -> AsyncIterator[DeltaEvent]:
        """Translate each English sentence once it closes, while the chat model keeps going.
        Code is passed on as the model writes it, never translated.

        The first delta of each sentence also carries that sentence in English (``text_en``), so
        a client that stops mid-reply still knows what the model said up to there.
        """
        sentences: asyncio.Queue[Segment | BaseException | None] = asyncio.Queue()

        async def cut() -> None:
            buffer = SentenceBuffer(self.settings.max_sentence_chars)
            try:
                async for piece in english:
                    sink.append(piece)
                    for sentence in buffer.feed(piece):
                        sentences.put_nowait(sentence)
                if rest := buffer.flush():
                    sentences.put_nowait(rest)
                sentences.put_nowait(None)
            except Exception as exc:  # handed to the consumer, which raises it in order
                sentences.put_nowait(exc)

        cutter = asyncio.create_task(cut())
        try:
            previous = None
            while (item := await sentences.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                separator = "" if previous is None else separator_after(previous)
                if isinstance(item, Verbatim):
                    english = "" if previous is None else english_separator(previous)
                    yield DeltaEvent(text=separator + item.text, text_en=english + item.text)
                    previous = item
                    continue
                text_en = item if previous is None else english_separator(previous) + item
                asked = time.monotonic()
                translation = self.models.to_user(item, language)
                try:
                    async for piece in within(translation, self.settings.model_silence_s):
                        if isinstance(piece, Working):  # a sign of life, not text
                            continue
                        yield DeltaEvent(text=separator + piece, text_en=text_en)
                        separator, text_en = "", None
                except BaseException:
                    translation.cancel()
                    raise
                self.observer.translated(time.monotonic() - asked, f"en-{language}")
                previous = item
        finally:
            cutter.cancel()
