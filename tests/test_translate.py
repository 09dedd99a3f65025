import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving.config import LanguageModel, LanguageModels, TranslatorSettings, load_config
from serving.engine import Engine, load_engine
from serving.errors import InvalidRequestError
from serving.events import Working
from serving.languages import language
from serving.model_config import GenerationSettings, ModelSpec
from serving.translate import LOOP_TRIES, QUIET_S, Translator, _has_loop
from tests.support import in_separate_slots


def translator(folder: Path, languages=("fr",), **per_language) -> Translator:
    return Translator(
        TranslatorSettings(
            model=ModelSpec(source=str(folder)),
            per_language=per_language,
            generation=GenerationSettings(max_new_tokens=10, min_new_tokens=3),
        ),
        list(languages),
    )


def test_seq2seq_translates_sentence_by_sentence(tiny_seq2seq: Path):
    own = LanguageModel(model=ModelSpec(source=str(tiny_seq2seq)), prefix=">>por<< ")
    model = translator(tiny_seq2seq, ["fr", "pt"], pt=LanguageModels(from_english=own))
    engine = model.route("en", "pt").engine
    assert engine.decode(model.prompt("Hello.", "en", "pt")).startswith(">>por<< Hello.")
    assert not engine.decode(model.prompt("Olá.", "pt", "en")).startswith(">>")  # other way
    assert not engine.decode(model.prompt("Hello.", "en", "fr")).startswith(">>")
    assert asyncio.run(model.translate("Hello. The weather is nice.", "en", "pt"))


def test_causal_few_shot_prompt_uses_the_language_file_s_examples(tiny_chat_source: Path):
    model = translator(tiny_chat_source, ["fr", "de"])
    last_de, english = language("de").examples[-1]  # the first ones may not fit a tiny model
    engine = model.route("de", "en").engine
    prompt = engine.decode(model.prompt("Danke.", "de", "en"))
    assert prompt.endswith("German: Danke.\nEnglish:")
    assert f"German: {last_de}\nEnglish: {english}\n\n" in prompt
    assert "French:" not in prompt
    prompt = engine.decode(model.prompt("Thanks.", "en", "de"))
    assert prompt.endswith("English: Thanks.\nGerman:")
    assert f"English: {english}\nGerman: {last_de}\n\n" in prompt


def test_languages_and_directions_that_share_a_model_share_one_engine(
    tiny_chat_source: Path, tiny_seq2seq: Path
):
    model = translator(tiny_chat_source, ["fr", "es", "it"])
    assert len(model.engines) == 1
    assert model.route("fr", "en").engine is model.route("en", "es").engine
    own = LanguageModels(to_english=LanguageModel(model=ModelSpec(source=str(tiny_seq2seq))))
    mixed = translator(tiny_chat_source, ["fr", "es"], fr=own)
    assert len(mixed.engines) == 2
    assert mixed.route("fr", "en").engine.is_encoder_decoder
    assert mixed.route("en", "fr").engine is mixed.route("es", "en").engine  # the shared one


def test_a_language_that_is_not_served_is_a_clear_error(tiny_chat_source: Path):
    model = translator(tiny_chat_source, ["fr"])
    with pytest.raises(InvalidRequestError, match="from 'de' to 'en'.*English and fr, both"):
        asyncio.run(model.translate("Guten Tag.", "de", "en"))
    with pytest.raises(InvalidRequestError, match="from 'fr' to 'de'"):
        asyncio.run(model.translate("Bonjour.", "fr", "de"))


def test_examples_that_do_not_fit_go_first_and_the_sentence_stays(tiny_chat_source: Path):
    model = translator(tiny_chat_source)
    route = model.route("fr", "en")
    whole = len(
        route.engine.encode("".join(f"French: {a}\nEnglish: {b}\n\n" for a, b in route.examples))
    )
    route.model.max_input_tokens = whole // 2
    ids = model.prompt("Merci beaucoup.", "fr", "en")
    prompt = route.engine.decode(ids)
    assert len(ids) <= whole // 2 - model.sampling.max_new_tokens
    assert route.examples[0][0] not in prompt and route.examples[-1][0] in prompt
    assert prompt.endswith("French: Merci beaucoup.\nEnglish:")


def test_a_message_is_cut_with_its_own_language_s_rules(tiny_chat_source: Path):
    model = translator(tiny_chat_source, ["de"])
    cut: list[str] = []

    async def one_sentence(route, sentence: str):
        cut.append(sentence)
        yield sentence

    model._sentence = one_sentence
    asyncio.run(
        model.translate("Wir treffen uns am 3. Oktober, z.B. im Park. Bis dann!", "de", "en")
    )
    assert cut == ["Wir treffen uns am 3. Oktober, z.B. im Park.", "Bis dann!"]


@pytest.mark.parametrize(
    ("sentence", "asked", "translated"),
    [
        (  # a list item's titles and its text go to the model apart; one word stays
            '2. **The Matrix** 2: "Reloaded" - A film about a hacker who finds the truth.',
            ["The Matrix 2", "A film about a hacker who finds the truth."],
            '2. <1>: "Reloaded" - <2>.',
        ),
        (  # past TITLE_WORDS, the colon is inside the text
            "1. Go to bed at the same time each night and get up early too: it helps.",
            ["Go to bed at the same time each night and get up early too: it helps."],
            "1. <1>.",
        ),
        (  # not a list item: one sentence
            "Here is the plan: rest, then eat.",
            ["Here is the plan: rest, then eat."],
            "<1>.",
        ),
        (  # bold marks go, and inline code stays as it is
            "Use the `**` operator, **not** `pow(x, 2)` or ``x ** 2``.",
            ["Use the `**` operator, not `pow(x, 2)` or ``x ** 2``."],
            "<1>.",
        ),
    ],
)
def test_a_list_item_s_titles_are_translated_apart_from_its_text(
    tiny_chat_source: Path, sentence: str, asked: list[str], translated: str
):
    """A few-shot model copies such items whole, in English (docs/languages.md). A model
    that ends a title with a full stop of its own does not keep it."""
    model = translator(tiny_chat_source, ["de"])
    sent: list[str] = []

    async def model_text(route, text: str):
        sent.append(text)
        yield f"<{len(sent)}>."

    model._text = model_text
    assert asyncio.run(model.translate(sentence, "en", "de")) == translated
    assert sent == asked


def test_code_in_a_message_is_kept_as_written_and_not_sent_to_the_model(tiny_chat_source: Path):
    model = translator(tiny_chat_source)
    sent: list[str] = []

    async def model_text(route, text: str):
        sent.append(text)
        yield f"<{len(sent)}>"

    model._text = model_text
    code = "```python\nif x:\n    print('Oui. Non.')\n```\n"
    message = "Pourquoi ce code plante ?\n" + code + "\nMerci. Bonne journée."
    assert asyncio.run(model.translate(message, "fr", "en")) == "<1>\n" + code + "\n<2> <3>"
    assert sent == ["Pourquoi ce code plante ?", "Merci.", "Bonne journée."]


def test_a_seq2seq_model_gets_a_list_item_whole(tiny_seq2seq: Path):
    model = translator(tiny_seq2seq)
    sent: list[str] = []

    async def translated(route, text: str):
        sent.append(text)
        yield text

    model._text = translated
    asyncio.run(model.translate("1. Rome: The Eternal City.", "en", "fr"))
    assert sent == ["Rome: The Eternal City."]


def test_causal_translation_streams_one_line_per_sentence(tiny_chat_source: Path):
    model = translator(tiny_chat_source)

    async def pieces() -> list[str]:
        return [piece async for piece in model.stream("Bonjour. Merci beaucoup.", "fr", "en")]

    out = asyncio.run(pieces())
    assert " " in out  # the separator between the two translated sentences
    assert all("\n" not in piece for piece in out)
    assert "".join(out).strip()


def test_a_sentence_slow_to_start_says_it_is_working_and_a_whole_text_does_not(
    tiny_chat_source: Path, monkeypatch: pytest.MonkeyPatch
):
    """Queued behind other sentences, the engine says nothing for a while: the router's
    stream says Working meanwhile; a whole translation (``translate``) is text alone."""
    monkeypatch.setattr("serving.translate.WORKING_EVERY_S", 0.05)
    model = translator(tiny_chat_source)
    engine = model.route("en", "fr").engine
    generate = engine.stream

    async def queued(*args, **kwargs):
        await asyncio.sleep(0.4)  # the other sentences' turn
        async for piece in generate(*args, **kwargs):
            yield piece

    engine.stream = queued

    async def items() -> list:
        return [item async for item in model.stream_sentence("Thank you.", "en", "fr")]

    out = asyncio.run(items())
    first_text = next(i for i, item in enumerate(out) if isinstance(item, str))
    assert first_text >= 3 and all(isinstance(item, Working) for item in out[:first_text])
    assert all(isinstance(item, str) for item in out[first_text:])
    assert asyncio.run(model.translate("Thank you. See you soon.", "en", "fr"))


def test_health_check_fails_once_the_weights_go_bad(tiny_seq2seq: Path):
    import torch

    from serving.errors import ModelUnavailableError

    model = translator(tiny_seq2seq)
    asyncio.run(model.check_health())  # a healthy encoder-decoder passes
    with torch.no_grad():
        next(model.engines[0].lm.model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelUnavailableError, match="not finite"):
        asyncio.run(model.check_health())


def _on_slots(
    gguf: Path,
    slots: int,
    languages=("fr", "de"),
    prompt_cache_mib: int = 0,
    engine: Callable[..., Engine] = load_engine,
    read_ahead: bool = True,
) -> Translator:
    """A few-shot translator on llama.cpp with ``slots`` slots, once it has read every prompt
    ahead (``read_ahead``; else as soon as it is built, which Serve waits for)."""
    from serving.model_config import BatchSettings

    model = ModelSpec(
        source=str(gguf), threads=1, context_tokens=512, prompt_cache_mib=prompt_cache_mib
    )
    settings = TranslatorSettings(
        model=model,
        generation=GenerationSettings(max_new_tokens=10),
        batching=BatchSettings(max_batch_size=slots),
    )
    translator = Translator(settings, list(languages), engine=engine)
    assert not read_ahead or translator.read_ahead_done(timeout=60)
    return translator


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    """Warnings of the replica's log ("ray.serve"), which Ray's own handler keeps from the root
    logger (and so from pytest's caplog) once Ray is imported."""
    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ray.serve")
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)


async def _cached_tokens(
    model: Translator, sentence: str, source: str, target: str, sampling=None
) -> int:
    """Translates ``sentence``; returns the tokens of its prompt that the engine found already
    read. ``sampling``: the translator's own unless given."""
    from serving.engine import Usage

    usage = Usage()
    prompt = model.prompt(sentence, source, target)
    engine = model.route(source, target).engine
    async for _ in engine.stream(prompt, sampling or model.sampling, usage):
        pass
    return usage.cached_tokens


def _read_from_cache(model: Translator, sentence: str, source: str, target: str) -> int:
    return asyncio.run(_cached_tokens(model, sentence, source, target))


def test_the_few_shot_prompts_are_read_ahead_on_all_slots_but_one(tiny_gguf: Path):
    """The translator reads each language's few-shot prompts ahead, in the profile's order, on
    all of llama.cpp's slots but one (the health probe's): a language's first sentence then
    reads only itself. With one slot, that slot is the probe's, and nothing is read ahead."""
    model = _on_slots(tiny_gguf, slots=4)
    assert model.warmed == [("fr", "to_english"), ("fr", "from_english"), ("de", "to_english")]

    async def on_a_running_loop() -> Translator:  # as Serve builds a replica
        return _on_slots(tiny_gguf, slots=4)

    assert asyncio.run(on_a_running_loop()).warmed == model.warmed
    warm = _read_from_cache(model, "Il fait beau.", "fr", "en")
    assert warm > 30  # the prompt's few-shot part was read before the sentence

    alone = _on_slots(tiny_gguf, slots=1)
    assert alone.warmed == []
    assert _read_from_cache(alone, "Il fait beau.", "fr", "en") < warm // 2


def test_the_first_language_is_read_before_the_replica_is_ready_and_the_others_when_idle(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Serve sends requests once the constructor returns: by then the translator has read its
    first language's prompts, both ways, and no other. It reads the others' in the
    background, each once no request has run for ``QUIET_S`` (a reply's next sentence comes
    sooner): a sentence meanwhile does not wait for them. The next start restores them all
    from the files that this one kept, before its first request (milliseconds each)."""
    monkeypatch.setenv("POLYGLOT_CACHE", str(tmp_path))  # nothing kept by an earlier start
    engines: list[Engine] = []
    begun: list[float] = []  # when each read ahead began

    def busy(*args) -> Engine:  # an engine that a request runs on, as the read-ahead sees it
        engine = load_engine(*args)
        engine.stats.add(active=1)
        read_ahead = engine.read_ahead

        def timed(prompt: list[int], copies: int) -> int:
            begun.append(time.monotonic())
            return read_ahead(prompt, copies)

        engine.read_ahead = timed  # type: ignore[method-assign]
        engines.append(engine)
        return engine

    model = _on_slots(tiny_gguf, slots=4, engine=busy, read_ahead=False)
    assert model.warmed == [("fr", "to_english"), ("fr", "from_english")]
    assert not model.read_ahead_done(timeout=0.5) and model.activity()["reading"] == 1
    assert _read_from_cache(model, "Guten Tag.", "de", "en") < 30  # its prompt, read now
    assert model.warmed == [("fr", "to_english"), ("fr", "from_english")] and len(begun) == 2

    ended = time.monotonic()
    engines[0].stats.add(active=-1)  # the request ends
    assert model.read_ahead_done(timeout=60) and model.activity()["reading"] == 0
    assert model.warmed == [("fr", "to_english"), ("fr", "from_english"), ("de", "to_english")]
    assert begun[2] - ended >= QUIET_S  # not between the sentences of one reply
    assert _read_from_cache(model, "Guten Tag.", "de", "en") > 30

    begun.clear()
    again = _on_slots(tiny_gguf, slots=4, engine=busy, read_ahead=False)
    assert again.warmed == model.warmed and len(begun) == 3
    assert _read_from_cache(again, "Guten Tag.", "de", "en") > 30


def test_with_a_slot_per_language_and_direction_no_prompt_is_read_twice(
    tiny_causal: Path,
):
    """Languages used in turn on too few slots push each other's few-shot prompts out, and
    every sentence reads its prompt again; the translator says which setting keeps them all.
    With a slot for each direction of each language, and the probe's, none is read twice,
    health probes included."""
    from serving.testing.tiny_gguf import write_gguf

    # Prompts that start with the start-of-text token, as Gemma's do: a probe that starts with
    # it too would share a start with every kept prompt, and llama.cpp gives it one's slot.
    tiny_gguf = write_gguf(tiny_causal, bos=True)
    languages = ("fr", "de", "es")
    turns = [(code, way) for code in languages for way in ("to_english", "from_english")] * 2

    def cached_per_turn(model: Translator) -> list[int]:
        found = []
        for code, way in turns:
            source, target = (code, "en") if way == "to_english" else ("en", code)
            found.append(_read_from_cache(model, "Une phrase de plus.", source, target))
        return found

    with _warnings() as said:
        short = _on_slots(tiny_gguf, slots=4, languages=languages)
    assert "es to_english, es from_english" in said[0]
    assert "translator.batching.max_batch_size: 7 would keep" in said[0]
    assert min(cached_per_turn(short)) < 30  # some turn read its few-shot prompt again

    # The second translator restores the prompts that the first read and kept on disk.
    for _ in ("read", "restored"):
        with _warnings() as said:
            enough = _on_slots(tiny_gguf, slots=7, languages=languages)
        assert len(enough.warmed) == 6
        assert said == []
        # The health check probes the model: a first probe after reading counts the tokens
        # that the read-ahead made, the next ones generate.
        for _ in range(3):
            asyncio.run(enough.check_health())
        assert min(cached_per_turn(enough)) > 30


@pytest.mark.parametrize("prompt_cache_mib", [0, 8])
def test_prompts_that_a_burst_pushes_out_of_their_slots_come_back_from_host_memory(
    tiny_gguf: Path, prompt_cache_mib: int
):
    """One direction's sentences all at once take every slot, pushing out the other
    directions' few-shot prompts. With ``model.prompt_cache_mib``, llama.cpp keeps the KV of
    what it pushed out in host memory and copies it back when that direction returns: its next
    sentence reads only itself. With none, it reads its whole prompt again."""
    from dataclasses import replace

    model = _on_slots(tiny_gguf, slots=5, prompt_cache_mib=prompt_cache_mib)
    assert len(model.warmed) == 4  # fr and de, both ways; the fifth slot is the probe's
    assert _read_from_cache(model, "Guten Tag.", "de", "en") > 30  # read ahead
    long = replace(model.sampling, max_new_tokens=40, min_new_tokens=40)

    async def burst() -> None:
        sentences = ["One.", "Two.", "Three.", "Four.", "Five."]
        await asyncio.gather(*(_cached_tokens(model, s, "en", "fr", long) for s in sentences))

    # Five slots: every one, the German prompt's too.
    in_separate_slots(model.route("en", "fr").engine, lambda: asyncio.run(burst()), requests=5)
    cached = _read_from_cache(model, "Wie geht es dir?", "de", "en")
    if prompt_cache_mib:
        assert cached > 30
    else:
        assert cached < 30


def test_the_greedy_first_token_once_banned_is_not_chosen(tiny_chat_source: Path):
    """Both engines take a request's banned tokens: greedy, the reply that began with a token
    begins with another once it is banned, and with the same one again once it is not."""
    from dataclasses import replace

    from serving.engine import Usage

    model = translator(tiny_chat_source)
    engine = model.route("en", "fr").engine
    prompt = model.prompt("Thank you.", "en", "fr")
    one = replace(model.sampling, max_new_tokens=1, min_new_tokens=1)

    async def first_piece(sampling) -> str:
        return "".join([piece async for piece in engine.stream(prompt, sampling, Usage())])

    first = asyncio.run(first_piece(one))
    banned = tuple(engine.encode(first, special=False))
    assert len(banned) == 1  # one token's text
    assert asyncio.run(first_piece(replace(one, banned_tokens=banned))) != first
    assert asyncio.run(first_piece(one)) == first


def _answers_with(engine, answer: str, asked: list, said: list | None = None, gap_s: float = 0):
    """``engine`` answers ``answer`` word by word (``gap_s`` apart), as a few-shot model that
    gives a sentence back would; a request that bans tokens gets the engine's own answer.
    ``asked`` gets each request's banned tokens, and ``said`` each word as it is answered."""
    generate = type(engine).stream.__get__(engine)  # the engine's own, never an earlier stand-in

    async def stream(prompt, sampling, usage, stop_at_newline=False):
        asked.append(sampling.banned_tokens)
        if sampling.banned_tokens:
            async for piece in generate(prompt, sampling, usage, stop_at_newline):
                yield piece
            return
        for word in answer.split(" "):
            await asyncio.sleep(gap_s)
            if said is not None:
                said.append(word)
            yield " " + word
        yield "\n"

    engine.stream = stream


def test_a_sentence_given_back_is_asked_again_without_the_token_it_began_with(
    tiny_chat_source: Path,
):
    """The few-shot model gives the English sentence back (Gemma did with "In Berlin, the time
    difference between Berlin and London is approximately 2 hours behind."): none of it goes
    out, and the second answer may not begin with its first token. A near-copy counts, and a
    list of names that comes back as it is does not."""
    model = translator(tiny_chat_source, ["de"])
    engine = model.route("en", "de").engine
    sentence = "In Berlin, the time difference to London is about two hours."
    near = "In Berlin, the time difference to London is about 2 hours."
    for answer in (sentence, near):
        asked: list = []
        _answers_with(engine, answer, asked)
        out = asyncio.run(model.translate(sentence, "en", "de"))
        assert asked == [(), tuple(engine.encode(" In", special=False)[:1])]
        assert "Berlin, the time" not in out

    names = "Paris, London, Berlin and Rome."
    asked = []
    _answers_with(engine, names, asked)
    assert asyncio.run(model.translate(names, "en", "de")) == names
    assert asked == [()]


def test_a_translation_streams_as_soon_as_it_cannot_be_the_sentence_given_back(
    tiny_chat_source: Path,
):
    """An answer is held back only until two of its words are not the source's: the first
    piece of a real translation goes out long before its end, and of a copy none does."""
    model = translator(tiny_chat_source, ["de"])
    engine = model.route("en", "de").engine
    sentence = "In Berlin, the time difference to London is about two hours."
    german = "In Berlin ist der Zeitunterschied zu London etwa zwei Stunden."

    async def arrivals(answer: str) -> list[tuple[int, str]]:
        """Each piece that goes out, with how many words the model had answered by then."""
        said: list[str] = []
        _answers_with(engine, answer, [], said, gap_s=0.05)
        pieces = model.stream_sentence(sentence, "en", "de")
        return [(len(said), piece) async for piece in pieces if isinstance(piece, str)]

    translated = asyncio.run(arrivals(german))
    # Held until "der" is known to be whole, so one word more: out after 5 words of 10.
    assert translated[0][0] <= 6 and translated[-1][0] == 10
    assert "".join(piece for _, piece in translated).strip() == german
    copied = asyncio.run(arrivals(sentence))
    assert "Berlin, the time" not in "".join(piece for _, piece in copied)


def _loops_until_barred(engine, loop: str, rest: str, asked: list, said: list) -> None:
    """``engine`` answers ``loop`` until it is told to go on from somewhere with a token
    barred: then it says ``rest``'s first word, and its other words when asked to go on from
    there. Each word comes in two pieces, as tokens do. ``asked`` gets each request's banned
    tokens and token cap; ``said``, every piece that the engine gives."""

    async def stream(prompt, sampling, usage, stop_at_newline=False):
        asked.append((sampling.banned_tokens, sampling.max_new_tokens))
        if sampling.banned_tokens:
            words = rest.split(" ")[:1]
        elif len(asked) > 1:
            words = rest.split(" ")[1:]
        else:
            words = loop.split(" ")
        for word in filter(None, words):
            half = (len(word) + 1) // 2
            for piece in (" " + word[:half], word[half:]):
                said.append(piece)
                yield piece
        yield "\n"

    engine.stream = stream


# Gemma's loop on a sentence about passwords, asked for French, and where its first time ends.
PASSWORD_LOOP = "Pour reset votre mot de passe, vous-même" + " vous-même" * 20
PASSWORD_FIRST_TIME = "Pour reset votre mot de passe, vous-même"


def _translated_from_a_loop(model: Translator, rest: str) -> tuple[str, list]:
    """The sentence in French from an engine that answers ``PASSWORD_LOOP`` until barred
    (``_loops_until_barred``), and each request's banned tokens and cap."""
    asked: list = []
    _loops_until_barred(model.route("en", "fr").engine, PASSWORD_LOOP, rest, asked, [])
    return asyncio.run(model.translate("To reset your password, use a service.", "en", "fr")), asked


def test_a_translation_that_loops_goes_on_from_the_loop_s_first_time_and_none_of_it_shows(
    tiny_chat_source: Path,
):
    """Gemma, asked for French, answered "Pour reset votre mot de passe, vous-même vous-même
    vous-même…" until its cap. Once a run of words comes a third time, the answer goes on from
    its first, the token that began the second barred for one step; and what streams out never
    held the run's second time."""
    model = translator(tiny_chat_source)
    engine = model.route("en", "fr").engine
    sentence = "To reset your password, you'll need to use an online service."
    asked: list = []
    said: list = []
    _loops_until_barred(engine, PASSWORD_LOOP, "utiliserez un service en ligne.", asked, said)

    async def pieces() -> list[str]:
        return [p async for p in model.stream_sentence(sentence, "en", "fr") if isinstance(p, str)]

    # What went out cannot be taken back: the whole of it holds no second "vous-même".
    out = "".join(asyncio.run(pieces()))
    assert out == "Pour reset votre mot de passe, vous-même utiliserez un service en ligne."
    assert asked[1] == (tuple(engine.encode(" vous", special=False)[:1]), 1)  # one step barred
    assert asked[2][0] == ()  # then free again
    assert "".join(said).count("vous-même") == 3  # the loop was stopped at its third time


def test_a_loop_that_comes_back_each_time_ends_the_sentence_where_it_last_began(
    tiny_chat_source: Path,
):
    """The model falls back into its loop on every way on: after ``LOOP_TRIES`` ways, the
    sentence ends where the last loop began, and no more is asked."""
    model = translator(tiny_chat_source, ["es"])
    engine = model.route("en", "es").engine
    asked: list = []
    loop = "10 de Octubre, " * 10
    _loops_until_barred(engine, "En la calle " + loop.strip(), "y " + loop.strip(), asked, [])
    out = asyncio.run(
        model.translate("On the street of October 10th, there is a shop.", "en", "es")
    )
    assert out == "En la calle 10 de Octubre" + " y 10 de Octubre" * LOOP_TRIES
    assert len(asked) == 1 + 2 * LOOP_TRIES  # each way on: one barred step, then the rest


def test_a_loop_whose_other_way_is_the_sentence_s_end_ends_it_there(tiny_chat_source: Path):
    """Barred from its loop, the model ends its answer: it is not asked to go on again (greedy,
    it would go back into the loop)."""
    out, asked = _translated_from_a_loop(translator(tiny_chat_source), rest="")
    assert out == PASSWORD_FIRST_TIME
    assert len(asked) == 2


def test_a_seq2seq_translation_that_loops_ends_at_the_loop_s_first_time(tiny_seq2seq: Path):
    """A seq2seq model cannot be told to go on from part of its answer."""
    out, asked = _translated_from_a_loop(translator(tiny_seq2seq), "utiliserez un service.")
    assert out == PASSWORD_FIRST_TIME
    assert len(asked) == 1


def test_a_source_that_repeats_itself_may_be_repeated_in_its_translation(tiny_chat_source: Path):
    """A run that the source has ("Ha ha ha") is no loop: its translation comes out whole."""
    model = translator(tiny_chat_source)
    engine = model.route("en", "fr").engine
    asked: list = []
    answer = "Ha ha ha, ha ha ha, très drôle."
    _answers_with(engine, answer, asked)
    assert asyncio.run(model.translate("Ha ha ha, ha ha ha, very funny.", "en", "fr")) == answer
    assert asked == [()]


# Sentences of SmolLM2's replies that Gemma gave back in English when asked for German (greedy,
# on llama.cpp, on its first try): the first one on the page, the others in 200 of SmolLM2's
# reply sentences sent through the translator in every language.
GIVEN_BACK = [
    "In Berlin, the time difference between Berlin and London is approximately 2 hours behind.",
    "Add 1 teaspoon of salt to the pot of water that was previously used for boiling the tomatoes.",
    'This practice, known as "beneficines," is a holistic approach that involves taking small '
    "steps in life, such as going outside or doing something that brings joy, while also "
    "improving the overall health of your body.",
]


@pytest.mark.slow
def test_a_sentence_the_real_translator_gave_back_in_english_comes_out_translated():
    """The offline profile's Gemma 3 (270M), judged by lingua."""
    from lingua import Language, LanguageDetectorBuilder

    model = Translator(load_config("offline").translator, ["de"])
    english_or_german = LanguageDetectorBuilder.from_languages(
        Language.ENGLISH, Language.GERMAN
    ).build()
    for sentence in GIVEN_BACK:
        german = asyncio.run(model.translate(sentence, "en", "de"))
        assert english_or_german.detect_language_of(german) == Language.GERMAN, german


# Sentences of SmolLM2's replies on which Gemma fell into a loop until its cap (greedy, on
# llama.cpp), with the language it was asked for: "…vous-même vous-même vous-même…",
# "…in der Zeitplan-Zeitplan-Zeitplan-…", "…sebbene fosse un'esclusiva, sebbene fosse…".
LOOPED = [
    (
        "fr",
        "To reset your password, you'll need to use an online service that allows users to "
        "access their own digital identity and can also store passwords securely in a secure "
        "location such as a cloud-based storage solution like Google Cloud Storage.",
    ),
    (
        "de",
        'You\'re right, I should have said "preheat" instead of "boil", but since you want to '
        'bake it in a specific time frame, I can rephrase: "I\'ll bake it in 40 minutes."',
    ),
    (
        "it",
        "The only exception would be if you're visiting a Japanese city or a country that has a "
        "visa-free entry into Japan.",
    ),
]


@pytest.mark.slow
def test_sentences_the_real_translator_looped_on_come_out_whole():
    """With no loop, and to their end: cut at the loop, each would stop mid-sentence."""
    model = Translator(load_config("offline").translator, ["fr", "de", "it"])
    for code, sentence in LOOPED:
        out = asyncio.run(model.translate(sentence, "en", code))
        assert not _has_loop(re.findall(r"\w+", out.lower())), out
        assert out.endswith("."), out
