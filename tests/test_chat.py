import asyncio
import statistics
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from serving.chat import ChatModel
from serving.config import ChatSettings, Exchange
from serving.engine import Usage
from serving.errors import InvalidRequestError
from serving.events import PromptInfo, ReplyInfo, Working
from serving.model_config import GenerationSettings, ModelSpec
from tests.support import in_separate_slots

HISTORY = [
    {"role": "user", "content": "Hello, how are you today?"},
    {"role": "assistant", "content": "I am fine, thank you."},
]


def chat_model(folder: Path, system_prompt: str | None = None, **model) -> ChatModel:
    return ChatModel(
        ChatSettings(
            model=ModelSpec(source=str(folder), **model),
            system_prompt=system_prompt,
            generation=GenerationSettings(max_new_tokens=12, min_new_tokens=6),
        )
    )


async def collect(model: ChatModel, history, message: str) -> list[str]:
    stream = model.stream(history, message)
    info = await anext(stream)
    assert isinstance(info, PromptInfo) and info.prompt_tokens > 0
    *pieces, end = [piece async for piece in stream]
    assert isinstance(end, ReplyInfo) and end.finish_reason in ("stop", "length")
    assert end.completion_tokens >= len(pieces) > 0  # a piece per token at most
    return pieces


def test_a_reply_that_hits_max_new_tokens_says_length(tiny_chat_source: Path):
    model = chat_model(tiny_chat_source)  # min_new_tokens=6, max_new_tokens=12: eos is unlikely

    async def end_of(message: str) -> ReplyInfo:
        return [item async for item in model.stream([], message)][-1]

    ends = [asyncio.run(end_of(f"Tell me about {topic}.")) for topic in ("cats", "rain", "maps")]
    assert all(end.completion_tokens <= 12 for end in ends)
    lengths = [end for end in ends if end.completion_tokens == 12]
    assert lengths and all(end.finish_reason == "length" for end in lengths)


def test_causal_chat_streams_several_pieces(tiny_chat_source: Path):
    model = chat_model(tiny_chat_source)
    assert not model.engine.is_encoder_decoder
    pieces = asyncio.run(collect(model, HISTORY, "What would you like to eat?"))
    assert len(pieces) > 1
    assert "".join(pieces).strip()


def test_a_stop_sequence_ends_the_reply_before_it_and_stops_the_engine(tiny_chat_source: Path):
    """Greedy, the same message gives the same reply: asked again with a stop sequence taken
    from its middle, the reply is what came before it, and the engine wrote fewer tokens."""
    model = ChatModel(
        ChatSettings(
            model=ModelSpec(source=str(tiny_chat_source)),
            generation=GenerationSettings(max_new_tokens=40, min_new_tokens=40),
        )
    )

    async def reply(options: dict) -> tuple[str, ReplyInfo]:
        items = [item async for item in model.stream([], "Tell me about cats.", options)]
        return "".join(item for item in items if isinstance(item, str)), items[-1]

    whole, end = asyncio.run(reply({"temperature": 0}))
    assert end == ReplyInfo(40, "length")
    stop = whole[len(whole) // 2 :][:3]
    cut, end = asyncio.run(reply({"temperature": 0, "stop": ["never written", stop]}))
    assert cut == whole[: whole.index(stop)]
    assert end.finish_reason == "stop" and end.completion_tokens < 40  # the engine stopped
    # Its usage counts every token it wrote: as many, greedy, write the sequence again.
    written, _ = asyncio.run(reply({"temperature": 0, "max_new_tokens": end.completion_tokens}))
    assert written.startswith(cut) and stop in written
    # Reached with the last token the reply may have, it still ends the reply: "stop".
    size = next(n for n in range(1, len(whole) + 1) if whole.find(whole[-n:]) == len(whole) - n)
    cut, end = asyncio.run(reply({"temperature": 0, "stop": [whole[-size:]]}))
    assert cut == whole[:-size] and end == ReplyInfo(40, "stop")
    # A sequence the reply never writes changes nothing.
    assert asyncio.run(reply({"temperature": 0, "stop": ["never written"]})) == (
        whole,
        ReplyInfo(40, "length"),
    )


def test_a_reply_slow_to_start_says_it_is_working_until_its_first_text(
    tiny_chat_source: Path, monkeypatch: pytest.MonkeyPatch
):
    """Queued behind other replies, the engine says nothing for a while: the stream says
    Working meanwhile, so the router does not take the replica for a dead one."""
    monkeypatch.setattr("serving.chat.WORKING_EVERY_S", 0.05)
    model = chat_model(tiny_chat_source)
    generate = model.engine.stream

    async def queued(*args, **kwargs):
        await asyncio.sleep(0.4)  # the other requests' turn
        async for piece in generate(*args, **kwargs):
            yield piece

    model.engine.stream = queued

    async def items() -> list:
        return [item async for item in model.stream([], "What would you like to eat?")]

    info, *rest, end = asyncio.run(items())
    assert isinstance(info, PromptInfo) and isinstance(end, ReplyInfo)
    first_text = next(i for i, item in enumerate(rest) if isinstance(item, str))
    assert first_text >= 3 and all(isinstance(item, Working) for item in rest[:first_text])
    assert "".join(item for item in rest if isinstance(item, str)).strip()


def test_new_conversations_find_the_system_prompt_already_read(tiny_chat_source: Path):
    """The replica reads the start that every prompt shares (template and system prompt) into
    each slot but the health probe's: conversations started at once each read only their own
    words, health checks included. transformers keeps no prompt, so it reads none ahead."""
    model = chat_model(tiny_chat_source, system_prompt="You are a kind and patient assistant.")
    start = model.shared_start()
    assert "You are a kind and patient assistant." in model.engine.decode(start)
    if not model.engine.kept_prompts:
        assert model.read_ahead == 0
        return
    assert model.read_ahead == model.engine.kept_prompts - 1 > 1
    for _ in range(3):  # the first probe counts the tokens read ahead; the next ones generate
        asyncio.run(model.check_health())
    openings = ["Tell me a story.", "What time is it?", "Why is the sky blue?", "Name a fruit."]
    openings += ["How do bees fly?", "Sing me a song.", "Draw a map.", "Count to ten."]

    # Long enough replies that every conversation holds its slot until all have started.
    sampling = replace(model.sampling, max_new_tokens=200, min_new_tokens=200)

    async def read_from_cache(message: str) -> int:
        prompt, _ = model.build_inputs([], message)
        usage = Usage()
        async for _ in model.engine.stream(prompt, sampling, usage):
            pass
        return usage.cached_tokens

    messages = openings[: model.read_ahead]

    async def started_at_once() -> list[int]:
        return await asyncio.gather(*(read_from_cache(message) for message in messages))

    found = in_separate_slots(model.engine, lambda: asyncio.run(started_at_once()), len(messages))
    assert min(found) >= len(start)


def test_replies_streamed_together_share_the_replicas_messages(tiny_chat_source: Path):
    """With a cap of 20 pieces a second in all, a reply alone gets a piece every 50 ms, and
    four at once about every 200 ms each, with the tokens in between joined."""
    model = ChatModel(
        ChatSettings(
            model=ModelSpec(source=str(tiny_chat_source)),
            generation=GenerationSettings(max_new_tokens=80, min_new_tokens=80),
            stream_interval_s=0.02,
            stream_messages_per_s=20,
        )
    )
    generate = model.engine.stream

    async def steady(*args, **kwargs):  # a token every 10 ms, as a bigger model streams
        async for piece in generate(*args, **kwargs):
            await asyncio.sleep(0.01)
            yield piece

    model.engine.stream = steady

    async def gaps(message: str) -> list[float]:
        stream = model.stream([], message)
        times = [time.monotonic() async for item in stream if isinstance(item, str)]
        return [later - earlier for earlier, later in pairwise(times[:-1])]  # not the last

    async def together() -> list[list[float]]:
        messages = ["Tell me a story.", "Name a fruit.", "Count to ten.", "Draw a map."]
        return await asyncio.gather(*(gaps(message) for message in messages))

    alone = asyncio.run(gaps("Tell me a story."))
    assert len(alone) > 10 and statistics.median(alone) < 0.08, alone
    for reply in asyncio.run(together()):
        assert reply and statistics.median(reply) >= 0.14, reply  # 3 or 4 replies: 150-200 ms
    assert model.replies == 0


def test_seq2seq_chat_answers(tiny_seq2seq: Path):
    model = chat_model(tiny_seq2seq)
    assert model.engine.is_encoder_decoder
    assert "".join(asyncio.run(collect(model, HISTORY, "Bonjour"))).strip()


def test_causal_history_is_trimmed_from_the_oldest_turn(tiny_chat_source: Path):
    model = chat_model(tiny_chat_source, max_input_tokens=100)
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 4}
        for i in range(10)
    ]
    ids, info = model.build_inputs(history, "Last question?")
    assert info.history_dropped > 0 and not info.message_truncated
    assert info.history_dropped % 2 == 0, "an exchange was cut in half"
    assert len(ids) == info.prompt_tokens <= model.input_budget
    text = model.engine.decode(ids)
    assert "turn 8" in text and "turn 9" in text and "turn 0" not in text
    assert "Last question?" in text


def test_short_history_is_sent_whole_in_the_models_chat_template(tiny_chat_source: Path):
    model = chat_model(tiny_chat_source)
    ids, info = model.build_inputs(HISTORY, "Last question?")
    assert info.history_dropped == 0
    assert model.engine.decode(ids) == (
        "<|user|>Hello, how are you today?</s><|assistant|>I am fine, thank you.</s>"
        "<|user|>Last question?</s><|assistant|>"
    )


def test_the_opening_exchange_starts_every_conversation_and_is_never_dropped(
    tiny_chat_source: Path,
):
    opening = [Exchange(user="Hi!", assistant="Hello! How can I help?")]
    model = ChatModel(
        ChatSettings(
            model=ModelSpec(source=str(tiny_chat_source), max_input_tokens=120),
            system_prompt="Be kind.",
            opening=opening,
            generation=GenerationSettings(max_new_tokens=12, min_new_tokens=6),
        )
    )
    opened = "<|system|>Be kind.</s><|user|>Hi!</s><|assistant|>Hello! How can I help?</s>"
    ids, info = model.build_inputs(HISTORY, "Last question?")
    assert info.history_dropped == 0
    assert model.engine.decode(ids) == (
        f"{opened}<|user|>Hello, how are you today?</s><|assistant|>I am fine, thank you.</s>"
        "<|user|>Last question?</s><|assistant|>"
    )
    assert model.engine.decode(model.shared_start()).startswith(opened)  # read once per slot
    long_history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 4}
        for i in range(10)
    ]
    ids, info = model.build_inputs(long_history, "Last question?")
    text = model.engine.decode(ids)
    assert info.history_dropped > 0 and "turn 0" not in text
    assert text.startswith(opened) and "turn 9" in text


def test_causal_message_longer_than_the_context_is_refused_clearly(tiny_chat_source: Path):
    model = chat_model(tiny_chat_source, max_input_tokens=40)
    with pytest.raises(InvalidRequestError, match="too long for the chat model"):
        model.build_inputs([], "Let us go for a walk in the park. " * 20)


def test_seq2seq_long_input_is_cut_to_its_positions_not_an_index_error(tiny_seq2seq: Path):
    model = chat_model(tiny_seq2seq)  # 64 positions, like Blenderbot's 128
    long_history = HISTORY * 20
    pieces = asyncio.run(collect(model, long_history, "The weather is nice. " * 40))
    assert "".join(pieces).strip()
    ids, info = model.build_inputs(long_history, "The weather is nice. " * 40)
    assert info.history_dropped == len(long_history) and info.message_truncated
    assert len(ids) <= model.engine.context_limit


def test_health_check_fails_once_the_weights_go_bad(tiny_causal: Path):
    import torch

    from serving.errors import ModelUnavailableError

    model = chat_model(tiny_causal)
    asyncio.run(model.check_health())
    with torch.no_grad():
        for parameter in model.engine.lm.model.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(ModelUnavailableError, match="not finite"):
        asyncio.run(model.check_health())
