"""The OpenAI-compatible API: its conversions, then the official ``openai`` client on the graph."""

from __future__ import annotations

import json
import time

import openai
import pytest

from serving.errors import InvalidRequestError, ModelNotFoundError
from serving.openai_api import (
    Completion,
    error_body,
    generation_options,
    parse_completion_request,
    split_conversation,
    sse,
    status_for,
)
from tests.support import activity as _activity

MODEL = "polyglot-chat"


def _request(**fields) -> bytes:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    return json.dumps(body).encode()


def test_a_conversation_splits_into_history_and_the_new_message():
    request = parse_completion_request(
        _request(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Salut"},
                {"role": "assistant", "content": "Bonjour !"},
                {"role": "user", "content": [{"type": "text", "text": "Ça va ?"}]},
            ]
        ),
        MODEL,
    )
    history, message = split_conversation(request)
    assert message == "Ça va ?"
    assert history == [
        {"role": "user", "content": "Salut"},
        {"role": "assistant", "content": "Bonjour !"},
    ]


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"{not json", InvalidRequestError, "JSON object"),
        (b"[1, 2]", InvalidRequestError, "JSON object"),
        (json.dumps({"model": MODEL}).encode(), InvalidRequestError, "'messages' is missing"),
        (_request(model="gpt-4o"), ModelNotFoundError, "'polyglot-chat'"),
        (_request(n=3), InvalidRequestError, "n to 1"),
        (_request(tools=[{"type": "function"}]), InvalidRequestError, "Tools"),
        (_request(temperature=5), InvalidRequestError, "'temperature'"),
        (_request(logprobs=True), InvalidRequestError, "Log probabilities"),
        (_request(top_logprobs=2), InvalidRequestError, "Log probabilities"),
        (_request(response_format={"type": "json_object"}), InvalidRequestError, "'json_object'"),
        (_request(stop=["a", "b", "c", "d", "e"]), InvalidRequestError, "at most 4"),
        (_request(stop=["x" * 257]), InvalidRequestError, "at most 256 characters"),
        (_request(stop=7), InvalidRequestError, "'stop' is not valid: give a string"),
        (_request(messages=[]), InvalidRequestError, "'messages'"),
        (
            _request(messages=[{"role": "robot", "content": "x"}]),
            InvalidRequestError,
            "'messages.0.role'",
        ),
    ],
)
def test_bad_requests_name_what_to_fix(body: bytes, error: type, words: str):
    with pytest.raises(error) as caught:
        parse_completion_request(body, MODEL)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([{"role": "assistant", "content": "Hello"}], "last message must be the user's"),
        ([{"role": "system", "content": "Be brief."}], "last message must be the user's"),
        ([{"role": "tool", "content": "42"}], "Tool messages"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "'image_url' part",
        ),
    ],
)
def test_conversations_the_service_cannot_answer_are_refused(messages, words):
    request = parse_completion_request(_request(messages=messages), MODEL)
    with pytest.raises(InvalidRequestError, match=words):
        split_conversation(request)


def test_decoding_options_map_to_generate():
    request = parse_completion_request(_request(max_tokens=7, temperature=0), MODEL)
    assert generation_options(request) == {"max_new_tokens": 7, "temperature": 0}
    newer = parse_completion_request(_request(max_completion_tokens=5, max_tokens=9), MODEL)
    assert generation_options(newer) == {"max_new_tokens": 5}
    assert generation_options(parse_completion_request(_request(), MODEL)) == {}
    one = parse_completion_request(_request(stop="\n", logprobs=False), MODEL)
    assert generation_options(one) == {"stop": ["\n"]}
    several = parse_completion_request(_request(stop=["User:", "", "END"]), MODEL)
    assert generation_options(several) == {"stop": ["User:", "END"]}
    plain = _request(stop=None, response_format={"type": "text"}, seed=3, user="me")
    assert generation_options(parse_completion_request(plain, MODEL)) == {}


def test_responses_have_openai_shapes():
    completion = Completion(MODEL)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    whole = completion.whole("Hello!", "stop", usage)
    assert whole["object"] == "chat.completion" and whole["id"].startswith("chatcmpl-")
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "Hello!"}
    chunk = completion.chunk({"content": "He"})
    assert chunk["id"] == whole["id"] and chunk["object"] == "chat.completion.chunk"
    assert completion.usage_chunk(usage)["choices"] == []
    assert sse("[DONE]") == "data: [DONE]\n\n"
    assert json.loads(sse(chunk)[len("data: ") :]) == chunk
    missing = ModelNotFoundError("no such model")
    assert status_for(missing) == 404 and status_for(InvalidRequestError("x")) == 400
    assert error_body(missing)["error"]["code"] == "model_not_found"


# --- the official client against the served graph (tiny models) ---


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/api/v1", api_key="not-needed", max_retries=0)


def test_the_openai_client_lists_the_model_and_gets_a_whole_answer(tiny_app: str):
    client = _client(tiny_app)
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("meta-llama/Llama-3-8B")
    assert missing.value.body["code"] == "model_not_found"
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello, how are you today?"}]
    )
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_max_tokens_caps_the_reply(tiny_app: str):
    answer = _client(tiny_app).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a long story about the sea."}],
        max_tokens=2,
        temperature=0,
    )
    assert answer.usage.completion_tokens <= 2 and answer.choices[0].finish_reason == "length"


def test_a_stop_sequence_ends_the_reply_before_it(long_app: str):
    """The long graph's model cannot end a reply on its own: only the stop sequence ends it,
    whole or streamed, before the sequence and far short of max_tokens."""
    client = openai.OpenAI(base_url=f"{long_app}/api/v1", api_key="x", max_retries=0)
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
    whole = client.chat.completions.create(**ask, max_tokens=60, temperature=0)
    text = whole.choices[0].message.content
    assert whole.choices[0].finish_reason == "length" and len(text) > 20
    stop = text[len(text) // 2 :][:3]
    expected = text[: text.index(stop)].strip()
    cut = client.chat.completions.create(**ask, max_tokens=60, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens < 60
    chunks = list(
        client.chat.completions.create(**ask, max_tokens=60, temperature=0, stop=stop, stream=True)
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_a_french_conversation_streams_translated_and_its_history_is_translated_once(
    tiny_app: str,
):
    client = _client(tiny_app)
    messages = [
        {"role": "user", "content": "Bonjour, je voudrais visiter Paris cet été."},
        {"role": "assistant", "content": "C'est une excellente idée, la ville est très belle."},
        {"role": "user", "content": "Quels musées me conseillez-vous de voir en premier ?"},
    ]

    def stream_once() -> tuple[list, int, int]:
        fr_en, en_fr = (
            _activity("Translator", of=("fr", "en"))["steps"],
            _activity("Translator", of=("en", "fr"))["steps"],
        )
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        fr_en_steps = _activity("Translator", of=("fr", "en"))["steps"] - fr_en
        en_fr_steps = _activity("Translator", of=("en", "fr"))["steps"] - en_fr
        return chunks, fr_en_steps, en_fr_steps

    chunks, first_fr_en, first_en_fr = stream_once()
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1 and "".join(texts).strip()  # several pieces: it streamed
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert first_en_fr > 0  # the English reply went through the en->fr translator
    # The same conversation again: its two French history entries are already known in English,
    # so only the new message is translated (greedy translation: same steps for it).
    _, second_fr_en, _ = stream_once()
    assert 0 < second_fr_en < first_fr_en


def test_a_short_message_goes_on_in_the_language_of_the_openai_history(tiny_app: str):
    """OpenAI clients send no ``language``: "Oui, merci" after French history is French (its
    reply goes through the en->fr translator); alone, English (it does not)."""
    client = _client(tiny_app)
    french = [
        {"role": "user", "content": "Bonjour, je voudrais visiter Paris cet été."},
        {"role": "assistant", "content": "C'est une excellente idée, la ville est très belle."},
    ]

    def translated_reply(messages: list[dict]) -> int:
        before = _activity("Translator", of=("en", "fr"))["steps"]
        reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
        assert reply.choices[0].message.content.strip()
        return _activity("Translator", of=("en", "fr"))["steps"] - before

    assert translated_reply([*french, {"role": "user", "content": "Oui, merci"}]) > 0
    assert translated_reply([{"role": "user", "content": "Oui, merci"}]) == 0


def test_refusals_are_openai_errors(tiny_app: str):
    client = _client(tiny_app)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as blank:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "   "}], stream=True
        )
    assert "empty" in blank.value.body["message"]
    assert _client(tiny_app).models.list().data  # and the service still serves


def test_closing_an_openai_stream_stops_the_chat_model(long_app: str):
    """The long graph's model would write 20000 tokens; the client reads a few and leaves."""
    client = openai.OpenAI(base_url=f"{long_app}/api/v1", api_key="x", max_retries=0)
    before = _activity("ChatModel", "long-api")["steps"]
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], stream=True
    )
    for index, _ in enumerate(stream):
        if index == 5:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while (now := _activity("ChatModel", "long-api"))["active"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert now["active"] == 0, now
    assert now["steps"] - before < 2_000, now  # stopped far short of 20000 tokens
