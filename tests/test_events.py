"""The API's events as they travel: the wire format, and reading it back."""

import asyncio

import pytest
from pydantic import ValidationError

from serving.events import (
    ChatReply,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    PromptInfo,
    ReplyInfo,
    StartEvent,
    parse_event,
    stored_turn,
)

DONE = DoneEvent(reply="Bonjour !", reply_en="Hello!", message_en="Hi", language="fr")


def test_each_event_goes_out_with_its_type_and_comes_back_the_same():
    for event in (
        StartEvent(language="fr", message_en="Hi", history_dropped=2),
        DeltaEvent(text="Bon", text_en="Good"),
        DeltaEvent(text="jour"),
        DONE,
        ErrorEvent(code="busy", message="Try again."),
    ):
        wire = event.wire()
        assert wire["type"] == event.type
        assert parse_event(wire) == event
    # A delta without English leaves the field out; the HTTP answer is the done without its type.
    assert DeltaEvent(text="jour").wire() == {"type": "delta", "text": "jour"}
    assert "type" not in DONE.answer() and DONE.answer()["usage"]["total_tokens"] == 0


def test_what_is_not_an_event_is_refused():
    for raw in ('{"type": "nope"}', '{"type": "delta"}', "[]"):
        with pytest.raises(ValidationError):
            parse_event(raw)


def test_a_done_event_is_stored_as_the_page_keeps_it():
    assert stored_turn("Salut", DONE) == {
        "user": "Salut",
        "assistant": "Bonjour !",
        "user_en": "Hi",
        "assistant_en": "Hello!",
        "language": "fr",
        "history_dropped": 0,
    }


def test_a_reply_stream_is_read_in_order_and_its_end_kept():
    async def items():
        yield PromptInfo(history_dropped=0, prompt_tokens=5)
        yield "Hel"
        yield "lo"
        yield ReplyInfo(2, "stop")

    async def read() -> tuple[PromptInfo, list[str], ReplyInfo]:
        reply = ChatReply(items())
        prompt = await reply.prompt()
        return prompt, [text async for text in reply.texts()], reply.end

    prompt, texts, end = asyncio.run(read())
    assert prompt.prompt_tokens == 5 and texts == ["Hel", "lo"] and end == ReplyInfo(2, "stop")

    async def no_prompt():
        yield "Hello"

    with pytest.raises(TypeError, match="starts with its PromptInfo"):
        asyncio.run(ChatReply(no_prompt()).prompt())
