"""The turn pipeline with models that run in the test's own process (no Ray, no Serve).

The models are small scripted ones (``ScriptedModels``): each test says what they answer, and
the pipeline's job (order, translation per sentence, English cache, stopping, failures) is what
is checked.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.config import RouterSettings
from serving.errors import GenerationError
from serving.events import (
    WORKING,
    DeltaEvent,
    Detection,
    DoneEvent,
    PromptInfo,
    ReplyInfo,
    StartEvent,
)
from serving.protocol import ChatRequest, HistoryEntry
from serving.turn import TurnPipeline, answered, within


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


# --- the pipeline ----------------------------------------------------------------------------

FRENCH = {  # what the scripted translators know, both ways
    "Bonjour, comment vas-tu ?": "Hello, how are you?",
    "Je vais bien.": "I am fine.",
    "Merci de demander !": "Thanks for asking!",
    "Et toi ?": "And you?",
    "Oui": "Yes",
    "ok": "ok",
}
SPANISH = {
    "¿Hola, cómo estás?": "Hello, how are you?",
    "Estoy bien.": "I am fine.",
    "¡Gracias por preguntar!": "Thanks for asking!",
    "¿Y tú?": "And you?",
}
SERVED = {"fr": FRENCH, "es": SPANISH}  # the languages the scripted models translate
POLISH = {"Jak się dzisiaj masz?"}  # a language they do not
TOO_SHORT = {"Oui", "ok"}  # to tell a language by, as the real detector finds them


class ScriptedStream:
    """A model's streamed answer: ``items``, then (optionally) a failure or silence."""

    def __init__(self, items: list, fail: Exception | None = None, stall: bool = False) -> None:
        self.items, self.fail, self.stall = items, fail, stall
        self.cancelled = False
        self.sent = 0

    async def _run(self):
        for item in self.items:
            self.sent += 1
            yield item
            await asyncio.sleep(0)
        if self.stall:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail

    def __aiter__(self):
        return self._run()

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedModels:
    """``TurnModels`` in this process: a chat model that says ``reply`` in pieces, translators
    that know ``SERVED``'s sentences; every call is recorded."""

    def __init__(self, reply: list[str], **chat_faults) -> None:
        self.reply = reply
        self.chat_faults = chat_faults
        self.translator_fails = False
        self.calls: list[tuple] = []
        self.streams: list[ScriptedStream] = []

    async def detect(self, text: str, conversation: str | None = None) -> Detection:
        self.calls.append(("detect", text, conversation))
        if text in TOO_SHORT:
            if conversation in (*SERVED, "en"):
                return Detection(conversation, reason="continued", confident=False)
            return Detection("en", reason="unsure", confident=False)
        for code, known in SERVED.items():
            if text in known:
                return Detection(code)
        if text in POLISH:  # a language this service does not speak
            return Detection("en", heard="pl", reason="unserved")
        return Detection("en")

    async def to_english(self, text: str, language: str) -> str:
        self.calls.append(("to_english", text, language))
        if self.translator_fails:
            raise GenerationError("the translator failed")
        return SERVED[language][text]

    def to_user(self, sentence: str, language: str) -> ScriptedStream:
        self.calls.append(("to_user", sentence, language))
        own = {english: text for text, english in SERVED[language].items()}
        words = own[sentence.strip()].split(" ")  # a sentence may end with its line break
        stream = ScriptedStream([words[0]] + [" " + word for word in words[1:]])
        self.streams.append(stream)
        return stream

    def chat(self, history: list[dict], message: str, options: dict | None) -> ScriptedStream:
        self.calls.append(("chat", history, message, options))
        items = [
            PromptInfo(history_dropped=1, prompt_tokens=40),
            *self.reply,
            ReplyInfo(7, "length"),
        ]
        stream = ScriptedStream(items, **self.chat_faults)
        self.streams.append(stream)
        return stream


class Recorder:
    """``TurnObserver`` that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def turn(self, language: str, api: str) -> None:
        self.seen.append(("turn", language, api))

    def first_text(self, seconds: float, language: str) -> None:
        self.seen.append(("first_text", language))

    def translated(self, seconds: float, direction: str) -> None:
        self.seen.append(("translated", direction))

    def generated(self, tokens: int) -> None:
        self.seen.append(("generated", tokens))


REPLY = [" I am", " fine.", " Thanks for", " asking!", " And you?"]


def _pipeline(models: ScriptedModels, silence: float = 5) -> tuple[TurnPipeline, Recorder]:
    recorder = Recorder()
    settings = RouterSettings(model_silence_s=silence)
    return TurnPipeline(models, settings, recorder), recorder


def _turn(
    pipeline: TurnPipeline,
    message: str,
    history: list[dict] | None = None,
    language: str | None = None,
    **kw,
) -> list:
    request = ChatRequest(message=message, history=history or [], language=language)

    async def collect() -> list:
        return [event async for event in pipeline.run(request, "websocket", **kw)]

    return asyncio.run(collect())


def test_an_english_turn_streams_the_model_s_pieces_and_ends_with_its_usage():
    models = ScriptedModels(REPLY)
    pipeline, recorder = _pipeline(models)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    events = _turn(pipeline, "How are you?", history, options={"max_new_tokens": 9})

    start, *deltas, done = events
    assert start == StartEvent(language="en", message_en="How are you?", history_dropped=1)
    assert [d.text for d in deltas] == ["I am", " fine.", " Thanks for", " asking!", " And you?"]
    assert all(isinstance(d, DeltaEvent) and d.text_en is None for d in deltas)
    assert isinstance(done, DoneEvent)
    assert done.reply == done.reply_en == "I am fine. Thanks for asking! And you?"
    assert done.usage.model_dump() == {
        "prompt_tokens": 40,
        "completion_tokens": 7,
        "total_tokens": 47,
    }
    assert done.finish_reason == "length" and done.history_dropped == 1
    assert models.calls == [
        ("detect", "How are you?", None),
        ("chat", history, "How are you?", {"max_new_tokens": 9}),
    ]
    assert recorder.seen == [
        ("turn", "en", "websocket"),
        ("first_text", "en"),
        ("generated", 7),
    ]


def test_a_french_turn_is_translated_each_way_one_closed_sentence_at_a_time():
    models = ScriptedModels(REPLY)
    pipeline, recorder = _pipeline(models)
    start, *deltas, done = _turn(pipeline, "Bonjour, comment vas-tu ?")

    assert start.language == "fr" and start.message_en == "Hello, how are you?"
    chat_call = next(call for call in models.calls if call[0] == "chat")
    assert chat_call[2] == "Hello, how are you?"  # the model reads English
    # Each sentence is cut once, as it closes, and translated once, in order.
    assert [call[1:] for call in models.calls if call[0] == "to_user"] == [
        ("I am fine.", "fr"),
        ("Thanks for asking!", "fr"),
        ("And you?", "fr"),
    ]
    assert done.reply == "Je vais bien. Merci de demander ! Et toi ?"
    assert "".join(d.text for d in deltas) == done.reply
    assert done.reply_en == "I am fine. Thanks for asking! And you?"
    # The first piece of each sentence carries it in English: a stopped reply keeps its English.
    assert [d.text_en for d in deltas if d.text_en] == [
        "I am fine.",
        " Thanks for asking!",
        " And you?",
    ]
    assert ("translated", "fr-en") in recorder.seen
    assert recorder.seen.count(("translated", "en-fr")) == 3


def test_code_in_a_translated_reply_streams_as_written_and_is_never_translated():
    reply = [" I am fine.\n", "```py", "thon\nx = 1  # fine.", "\n```\n", "And you?"]
    models = ScriptedModels(reply)
    pipeline, recorder = _pipeline(models)
    start, *deltas, done = _turn(pipeline, "Bonjour, comment vas-tu ?")

    assert [call[1] for call in models.calls if call[0] == "to_user"] == [
        "I am fine.\n",
        "And you?",
    ]
    code = "```python\nx = 1  # fine.\n```\n"
    assert done.reply == "Je vais bien.\n" + code + "Et toi ?"
    assert "".join(d.text for d in deltas) == done.reply
    # Piece by piece as the model wrote it, not held until the block closes.
    assert [d.text for d in deltas if d.text_en and d.text_en in code] == [
        "\n```py",
        "thon\nx = 1  # fine.",
        "\n```\n",
    ]
    assert "".join(d.text_en or "" for d in deltas) == done.reply_en
    assert done.reply_en == "I am fine.\n" + code + "And you?"
    assert recorder.seen.count(("translated", "en-fr")) == 2


def test_a_third_language_goes_through_its_own_translations_and_metrics():
    models = ScriptedModels(REPLY)
    pipeline, recorder = _pipeline(models)
    start, *deltas, done = _turn(pipeline, "¿Hola, cómo estás?")

    assert start.language == done.language == "es"
    assert start.message_en == done.message_en == "Hello, how are you?"
    assert ("to_english", "¿Hola, cómo estás?", "es") in models.calls
    assert [call[2] for call in models.calls if call[0] == "to_user"] == ["es"] * 3
    assert done.reply == "Estoy bien. ¡Gracias por preguntar! ¿Y tú?"
    assert "".join(d.text for d in deltas) == done.reply
    assert ("turn", "es", "websocket") in recorder.seen and ("first_text", "es") in recorder.seen
    assert ("translated", "es-en") in recorder.seen
    assert recorder.seen.count(("translated", "en-es")) == 3
    # An OpenAI client's Spanish history is read in English through the same translator.
    history = [HistoryEntry(role="user", content="¡Gracias por preguntar!")]
    turn = asyncio.run(pipeline.in_english(ChatRequest(message="¿Y tú?", history=history)))
    assert [entry.content for entry in turn.history] == ["Thanks for asking!"]
    assert turn.message == "¿Y tú?" and turn.language == "es"
    assert models.calls[-1] == ("to_english", "¡Gracias por preguntar!", "es")


def test_french_history_is_translated_once_and_a_turn_s_own_french_is_remembered():
    models = ScriptedModels(REPLY)
    pipeline, _ = _pipeline(models)
    _turn(pipeline, "Bonjour, comment vas-tu ?")
    models.calls.clear()

    history = [
        HistoryEntry(role="user", content="Bonjour, comment vas-tu ?"),
        HistoryEntry(role="assistant", content="Je vais bien. Merci de demander ! Et toi ?"),
        HistoryEntry(role="user", content="Merci de demander !"),
    ]
    english = asyncio.run(pipeline.in_english(ChatRequest(message="Oui", history=history)))
    assert [entry.content for entry in english.history] == [
        "Hello, how are you?",
        "I am fine. Thanks for asking! And you?",
        "Thanks for asking!",
    ]
    assert [entry.role for entry in english.history] == ["user", "assistant", "user"]
    # The turn's own message and reply came from its cache; only the new entry was translated.
    assert [call for call in models.calls if call[0] == "to_english"] == [
        ("to_english", "Merci de demander !", "fr")
    ]
    models.calls.clear()
    asyncio.run(pipeline.in_english(ChatRequest(message="Oui", history=history)))
    assert [call for call in models.calls if call[0] == "to_english"] == []


def test_a_message_too_short_to_tell_continues_in_the_conversation_s_language():
    models = ScriptedModels(REPLY)
    pipeline, recorder = _pipeline(models)
    history = [{"role": "user", "content": "Hello, how are you?"}]
    start, *deltas, done = _turn(pipeline, "Oui", history, language="fr")

    assert ("detect", "Oui", "fr") in models.calls
    assert start.language == done.language == "fr" and start.reason == "continued"
    assert ("to_english", "Oui", "fr") in models.calls and done.message_en == "Yes"
    assert done.reply == "Je vais bien. Merci de demander ! Et toi ?"
    assert ("turn", "fr", "websocket") in recorder.seen

    # A new conversation has nothing to continue: English, as too short to tell; an English
    # one goes on in English.
    for language, reason in ((None, "unsure"), ("en", "continued")):
        start, *_, done = _turn(pipeline, "Oui", history, language=language)
        assert start.language == done.language == "en" and start.reason == reason
        assert done.message_en == "Oui"
    # A message that tells its own language needs none (an English one ends the French).
    start, *_ = _turn(pipeline, "¿Y tú?", history, language="fr")
    assert start.language == "es" and start.reason is None


def test_an_openai_history_gives_its_conversation_s_language_to_a_short_message():
    """OpenAI clients send no ``language``: the latest history entry whose text tells its
    language (a short one does not) stands for it."""
    models = ScriptedModels(REPLY)
    pipeline, _ = _pipeline(models)

    def language_of(*texts: str) -> str | None:
        history = [
            HistoryEntry(role="user" if index % 2 == 0 else "assistant", content=text)
            for index, text in enumerate(texts)
        ]
        return asyncio.run(pipeline.in_english(ChatRequest(message="ok", history=history))).language

    assert language_of("Bonjour, comment vas-tu ?", "Je vais bien.", "Oui") == "fr"
    assert language_of("Bonjour, comment vas-tu ?", "I am fine.", "ok") == "en"
    assert language_of("¿Hola, cómo estás?", "Je vais bien.") == "fr"  # the latest one
    assert language_of("Oui", "ok") is None and language_of() is None
    # The turn then continues it, as on the WebSocket.
    history = [HistoryEntry(role="user", content="Bonjour, comment vas-tu ?")]
    turn = asyncio.run(pipeline.in_english(ChatRequest(message="ok", history=history)))

    async def start():
        return await anext(pipeline.run(turn, "openai"))

    assert asyncio.run(start()).language == "fr"


def test_an_openai_history_entry_too_short_to_tell_is_read_in_the_language_before_it():
    """In an OpenAI history, "Oui" after French went on in French when it was sent: the
    model reads "Yes". With nothing told before it, it stays as it is (read as English, as
    its own turn was)."""
    models = ScriptedModels(REPLY)

    def history_of(*texts: str) -> list[str]:
        pipeline, _ = _pipeline(models)  # a replica of its own: nothing remembered
        history = [HistoryEntry(role="user", content=text) for text in texts]
        turn = asyncio.run(pipeline.in_english(ChatRequest(message="ok", history=history)))
        return [entry.content for entry in turn.history]

    assert history_of("Bonjour, comment vas-tu ?", "Oui") == ["Hello, how are you?", "Yes"]
    assert ("to_english", "Oui", "fr") in models.calls
    assert history_of("Oui", "Bonjour, comment vas-tu ?") == ["Oui", "Hello, how are you?"]
    assert history_of("Hello, how are you?", "ok") == ["Hello, how are you?", "ok"]


@pytest.mark.parametrize("message", ["How are you?", "Bonjour, comment vas-tu ?"])
def test_a_client_that_leaves_mid_reply_stops_every_model_stream(message: str):
    models = ScriptedModels(REPLY)
    pipeline, _ = _pipeline(models)

    async def leave_after_first_delta() -> tuple[list, list[bool]]:
        events = pipeline.run(ChatRequest(message=message), "websocket")
        seen = [await anext(events), await anext(events)]
        await events.aclose()  # the client is gone: nothing more is read
        return seen, [stream.cancelled for stream in models.streams]

    (start, delta), cancelled = asyncio.run(leave_after_first_delta())
    assert isinstance(start, StartEvent) and isinstance(delta, DeltaEvent)
    chat = models.streams[0]
    assert chat.sent < len(chat.items)  # the model was still writing
    # At once, not when the loop ends: the chat model and the sentence being translated stop.
    assert cancelled[0] and cancelled[-1], cancelled


def test_a_translator_that_fails_ends_the_turn_with_its_error():
    models = ScriptedModels(REPLY)
    models.translator_fails = True
    pipeline, _ = _pipeline(models)
    with pytest.raises(GenerationError, match="the translator failed"):
        _turn(pipeline, "Bonjour, comment vas-tu ?")
    assert not any(call[0] == "chat" for call in models.calls)


@pytest.mark.parametrize("message", ["How are you?", "Bonjour, comment vas-tu ?"])
def test_a_chat_model_that_fails_mid_reply_ends_the_turn_and_is_stopped(message: str):
    models = ScriptedModels(REPLY[:2], fail=GenerationError("the model failed"))
    pipeline, _ = _pipeline(models)
    with pytest.raises(GenerationError, match="the model failed"):
        _turn(pipeline, message)
    assert models.streams[0].cancelled


def test_a_chat_model_that_goes_quiet_ends_the_turn_within_the_silence_bound():
    models = ScriptedModels(REPLY[:2], stall=True)
    pipeline, _ = _pipeline(models, silence=0.2)
    started = time.monotonic()
    with pytest.raises(GenerationError, match="no answer for 0 s"):
        _turn(pipeline, "How are you?")
    assert time.monotonic() - started < 5  # 0.2 s of silence, not the stall's forever
    assert models.streams[0].cancelled


def test_a_slow_chat_model_that_says_it_is_working_is_waited_for_past_the_silence_bound():
    """A reply queued behind others in a busy engine: its first text comes later than the
    silence bound, but the replica says Working meanwhile. The turn is answered, and the
    signs reach no client; a replica that died says nothing and is still caught (above)."""

    class Queued:
        cancelled = False

        async def _run(self):
            yield PromptInfo(history_dropped=0, prompt_tokens=9)
            for _ in range(6):  # 0.6 s of waiting, three times the 0.2 s bound
                await asyncio.sleep(0.1)
                yield WORKING
            yield " Fine,"
            yield " thanks."
            yield ReplyInfo(2, "stop")

        def __aiter__(self):
            return self._run()

        def cancel(self) -> None:
            self.cancelled = True

    models = ScriptedModels(REPLY)
    models.chat = lambda history, message, options: Queued()
    pipeline, _ = _pipeline(models, silence=0.2)
    start, *deltas, done = _turn(pipeline, "How are you?")
    assert isinstance(start, StartEvent) and isinstance(done, DoneEvent)
    assert [d.text for d in deltas] == ["Fine,", " thanks."]
    assert done.reply == "Fine, thanks."


def test_a_slow_translator_that_says_it_is_working_is_waited_for_past_the_silence_bound():
    """Each sentence's translation waits behind others, longer than the silence bound, with
    Working signs meanwhile: the French reply comes whole, and no sign becomes text."""
    models = ScriptedModels(REPLY)
    to_user = models.to_user

    class Queued(ScriptedStream):
        async def _run(self):
            for _ in range(5):  # 0.5 s before the first word, against a 0.2 s bound
                await asyncio.sleep(0.1)
                yield WORKING
            async for item in super()._run():
                yield item

    def queued(sentence: str, language: str) -> ScriptedStream:
        stream = Queued(to_user(sentence, language).items)
        models.streams.append(stream)
        return stream

    models.to_user = queued
    pipeline, _ = _pipeline(models, silence=0.2)
    start, *deltas, done = _turn(pipeline, "Bonjour, comment vas-tu ?")
    assert start.language == "fr" and isinstance(done, DoneEvent)
    assert done.reply == "Je vais bien. Merci de demander ! Et toi ?"
    assert "".join(d.text for d in deltas) == done.reply


def test_a_language_the_service_does_not_speak_is_answered_in_english_and_says_why():
    models = ScriptedModels(REPLY)
    pipeline, recorder = _pipeline(models)
    start, *deltas, done = _turn(pipeline, "Jak się dzisiaj masz?")
    assert start.language == "en" and start.heard == "pl" and start.reason == "unserved"
    assert start.message_en == "Jak się dzisiaj masz?"  # not sent to any translator
    assert not any(call[0] in ("to_english", "to_user") for call in models.calls)
    assert done.language == "en" and done.reply == "I am fine. Thanks for asking! And you?"
    assert ("turn", "en", "websocket") in recorder.seen
