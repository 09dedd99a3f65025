"""What a turn is made of, typed once: the API's events, a stored turn, and a reply stream.

- ``StartEvent``, ``DeltaEvent``, ``DoneEvent``, ``ErrorEvent``: the events that the WebSocket
  API sends (``type`` names each) and that the page, the benchmark and the tests read back with
  ``parse_event``.
- ``StoredTurn``: what one exchange leaves in the browser.
- ``PromptInfo``, text, ``ReplyInfo``: the items of the chat model's reply stream, which
  ``ChatReply`` reads in order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def wire(self) -> dict:
        """The event as the API sends it (a delta's ``text_en`` only where it has one)."""
        return self.model_dump(exclude_none=True)


class StartEvent(_Event):
    """The turn is under way: the language detected and what the model reads."""

    type: Literal["start"] = "start"
    language: str
    message_en: str
    history_dropped: int = 0  # oldest history messages that the model could not see
    # Why a message was read as English although it is not: "unserved" (``heard`` is a
    # language this service does not speak) or "unsure" (too short or too mixed to tell). Or
    # "continued": too short to tell, it was read in the conversation's language (the
    # request's ``language``): English or a served one.
    heard: str | None = None
    reason: Literal["unserved", "unsure", "continued"] | None = None


class DeltaEvent(_Event):
    """The next piece of the reply, in the person's language.

    On translated turns the first piece of each sentence also carries that sentence in English.
    """

    type: Literal["delta"] = "delta"
    text: str
    text_en: str | None = None


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class DoneEvent(_Event):
    """The whole reply, in the person's language and in English, and what it cost."""

    type: Literal["done"] = "done"
    reply: str
    reply_en: str
    message_en: str
    language: str
    history_dropped: int = 0
    usage: Usage = Usage()
    finish_reason: Literal["stop", "length"] = "stop"

    def answer(self) -> dict:
        """The HTTP API's answer: this event without ``type``."""
        return self.model_dump(exclude={"type"})


class ErrorEvent(_Event):
    """The turn failed; ``code`` is stable (``busy``, ``invalid_request``, …), ``message`` is
    for people."""

    type: Literal["error"] = "error"
    code: str
    message: str


Event = Annotated[StartEvent | DeltaEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]
FINAL = (DoneEvent, ErrorEvent)  # the events that end a turn
_EVENT = TypeAdapter(Event)


def parse_event(raw: str | bytes | dict) -> Event:
    """An event from its JSON text or dict (``pydantic.ValidationError`` when it is none)."""
    return _EVENT.validate_python(raw if isinstance(raw, dict) else json.loads(raw))


class StoredTurn(TypedDict):
    """One exchange as the page keeps it: what the person wrote and read, and, for a translated
    turn, what the model read and wrote in English, so nothing is translated twice."""

    user: str
    assistant: str
    user_en: str
    assistant_en: str
    language: str
    history_dropped: NotRequired[int]
    stopped: NotRequired[bool]  # the person stopped the reply: ``assistant`` is partial
    heard: NotRequired[str | None]  # as on the start event: why it was read as English
    reason: NotRequired[str | None]


def stored_turn(user: str, done: DoneEvent) -> StoredTurn:
    return {
        "user": user,
        "assistant": done.reply,
        "user_en": done.message_en,
        "assistant_en": done.reply_en,
        "language": done.language,
        "history_dropped": done.history_dropped,
    }


@dataclass(frozen=True)
class Detection:
    """``language``: what the turn speaks (a served language, or English). ``heard``: the
    language lingua read when it is another one; ``reason`` says why the turn is in English,
    or that it continues the conversation's language. ``confident``: whether the text alone
    told its language (a short "Oui" or "Thanks" does not)."""

    language: str
    heard: str | None = None
    reason: Literal["unserved", "unsure", "continued"] | None = None
    confident: bool = True

    @property
    def told(self) -> str | None:
        """The language, where the text alone told it."""
        return self.language if self.confident else None


@dataclass(frozen=True)
class PromptInfo:
    """The first item of every reply stream: how much of the conversation the model sees."""

    history_dropped: int  # oldest history messages left out to fit the model's context
    prompt_tokens: int
    message_truncated: bool = False  # only the end of the message fitted (seq2seq models)


@dataclass(frozen=True)
class ReplyInfo:
    """The last item of every reply stream: what the reply cost and why it ended."""

    completion_tokens: int
    finish_reason: Literal["stop", "length"]


@dataclass(frozen=True)
class Working:
    """A sign of life in a model's stream that has had nothing else to send for a while (its
    request waits behind others in the engine, or the model reads a long prompt). The router's
    silence guard (``router.model_silence_s``) then knows that the replica is alive and the
    turn is only slow; every reader skips it."""


WORKING = Working()
WORKING_EVERY_S = 5.0  # a model stream with nothing to send says Working this often

# A reply stream: one PromptInfo, texts (and Working while there are none), one ReplyInfo.
ChatItem = PromptInfo | str | Working | ReplyInfo


class ChatReply:
    """A chat model's reply stream, read in order: ``await prompt()``, ``texts()``, ``end``."""

    def __init__(self, items: AsyncIterator[ChatItem]) -> None:
        self._items = items
        self.end = ReplyInfo(0, "stop")  # replaced by the stream's own once it is read

    async def prompt(self) -> PromptInfo:
        first = await anext(self._items)
        if not isinstance(first, PromptInfo):
            raise TypeError(f"A reply stream starts with its PromptInfo, not {first!r}.")
        return first

    async def texts(self) -> AsyncIterator[str]:
        async for item in self._items:
            if isinstance(item, ReplyInfo):
                self.end = item
            elif isinstance(item, str):
                yield item
            elif isinstance(item, Working):
                continue
            else:
                raise TypeError(f"A reply stream has one PromptInfo, first: got {item!r}.")
