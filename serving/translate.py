"""Translator deployment: every served language, to English and from English.

A language with a model of its own (the seed profile's Marian pairs) uses it; the others share
the translator's model, which a causal LM runs few-shot with the language's examples from
serving/languages/. Languages and directions that name the same model share one engine, so the
offline profile loads one Gemma for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Literal

from serving.config import DIRECTIONS, TranslatorSettings
from serving.engine import Engine, EngineDeployment, Sampling, Usage, load_engine
from serving.errors import ChatServiceError, InvalidRequestError
from serving.events import WORKING, WORKING_EVERY_S, Working
from serving.languages import ENGLISH, language
from serving.model_config import ModelSpec
from serving.pacing import kept_alive
from serving.sentences import (
    INLINE_CODE,
    Sentences,
    Verbatim,
    separator_after,
    split_sentences,
)

# A list marker or heading at the start of a sentence: kept as is, not sent to the model.
_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•]|#+)\s+")
# Where a list item's title ends and its text starts: "1. **Rome**: The Eternal City...",
# "2. "Emma" by Jane Austen - A witty novel...".
_TITLE_END = re.compile(r"(?::|\s[-–—])\s+")
TITLE_WORDS = 10  # at most: past them, a colon or a dash is inside the text itself

# A few-shot model sometimes gives a sentence back in the language it was to translate: about
# 1 to 2 % of the chat model's sentences, English to each language, nearly all long ones. Of
# such an answer's words, 95 % or more are the source's; of a real translation's, at most
# about 60 % (names, numbers, a URL). An answer is held back while it could still be a copy,
# and one that is gets a second try, which may not begin as the first did.
_WORD = re.compile(r"\w+")
_LAST_WORD = re.compile(r"\w+$")
COPY_SHARE = 0.8  # of an answer's words found in its source: the sentence came back
COPY_WORDS = 4  # words that a copy has, and lower-case ones that its source needs

# A greedy few-shot model sometimes falls into a loop, a few words again and again until the
# length cap ("vous-même vous-même…", "10 de Octubre, 10 de Octubre, …"): 5 of 1,200 reply
# sentences. A run of at most LOOP_WORDS words LOOP_TIMES times in a row, where the source has
# none, is one. The answer goes on from the run's first time, the token that began its second
# barred for that one step. Words that may be a run's start are held until they are not one.
LOOP_WORDS = 4
LOOP_TIMES = 3
LOOP_TRIES = 2  # ways on from a loop; past them, the sentence ends where the last one began


def _without_emphasis(text: str) -> str:
    """``text`` without markdown's bold marks, which confuse small models; inline code stays
    as it is (a "**" there is an operator)."""
    kept, start = [], 0
    for code in INLINE_CODE.finditer(text):  # its characters are not markdown
        kept += [text[start : code.start()].replace("**", ""), code.group(0)]
        start = code.end()
    return "".join([*kept, text[start:].replace("**", "")])


def _may_be_copy(source: set[str], answer: str, finished: bool) -> bool:
    """Whether ``answer`` is, or may yet turn out to be, ``source``'s sentence given back. At
    its end: it has ``COPY_WORDS`` words or more, and ``COPY_SHARE`` of them are the source's.
    So far: until two of its whole words are not the source's and make more than the rest of
    that share (a near-copy changes a word: "Add 1/2 teaspoon" for "Add 1 teaspoon")."""
    if not finished:
        answer = _LAST_WORD.sub("", answer)  # it may go on in the next piece
    words = [word.lower() for word in _WORD.findall(answer)]
    kept = sum(word in source for word in words)
    if finished:
        return len(words) >= COPY_WORDS and kept >= COPY_SHARE * len(words)
    return len(words) - kept < 2 or kept >= COPY_SHARE * len(words)


def _runs(words: list[str]) -> list[int]:
    """For each run length k from 1 to ``LOOP_WORDS``: where the words at the end of ``words``
    that each repeat the word k before them begin (``len(words)`` where the last does not)."""
    starts = []
    for k in range(1, LOOP_WORDS + 1):
        start = len(words)
        while start > k and words[start - 1] == words[start - 1 - k]:
            start -= 1
        starts.append(start)
    return starts


def _loop(words: list[str]) -> int | None:
    """Where a loop at the end of ``words`` begins its second time, if they end in one."""
    looped = [
        start
        for k, start in enumerate(_runs(words), 1)
        if len(words) - start >= (LOOP_TIMES - 1) * k
    ]
    return min(looped, default=None)


def _has_loop(words: list[str]) -> bool:
    """Whether ``words`` have a run of words ``LOOP_TIMES`` times in a row anywhere."""
    return any(_loop(words[:end]) is not None for end in range(2, len(words) + 1))


@dataclass(frozen=True)
class Parts:
    """A sentence as the translator sends it to a few-shot model: its list marker (kept as
    it is), its titles with the separator after each (translated one by one), its text."""

    marker: str
    titles: tuple[tuple[str, str], ...]
    text: str

    @classmethod
    def of(cls, sentence: str, titles_apart: bool = True) -> Parts:
        """``titles_apart``: False keeps the titles in the text (a seq2seq model, which is
        not prompted few-shot, reads the item whole)."""
        marker = _MARKER.match(sentence)
        text = sentence[marker.end() :] if marker else sentence
        text = _without_emphasis(text).strip()
        titles: list[tuple[str, str]] = []
        # A few-shot model copies a list item whole, in English, about one time in six when
        # it starts with a name or a title (docs/languages.md): titles and text go apart.
        while marker and titles_apart and (title := _TITLE_END.search(text)):
            if title.start() == 0 or len(text[: title.start()].split()) > TITLE_WORDS:
                break
            separator = title.group(0).replace("\n", " ").rstrip() + " "
            titles.append((text[: title.start()], separator))
            text = text[title.end() :]
        return cls(marker.group(0).strip() if marker else "", tuple(titles), text)


logger = logging.getLogger("ray.serve")  # the replica's own log, as Serve writes it

Direction = Literal["to_english", "from_english"]
Key = tuple[str, Direction]  # a language's code and a direction
Prompt = tuple[Key, list[int]]  # a direction's few-shot prompt, read ahead
# Reading ahead in the background waits until no request has run on the engine for QUIET_S:
# the sentences of one reply come less than a second apart, and each would otherwise wait for a
# prompt read between them (0.7-1.9 s on 2 cores).
QUIET_S = 2.0
IDLE_POLL_S = 0.05
READ_AHEAD_DONE = "Read ahead: done"  # the replica's log says so once nothing is left to read


@dataclass(frozen=True)
class Route:
    """How one language is translated in one direction."""

    engine: Engine
    model: ModelSpec
    prefix: str  # before each sentence, for a seq2seq model
    source_name: str  # the few-shot prompt's labels
    target_name: str
    examples: list[tuple[str, str]]
    source_rules: Sentences  # where the source text's sentences end


class Translator(EngineDeployment):
    """Translates between English and every served language, sentence by sentence, with
    seq2seq models or few-shot causal LMs."""

    def __init__(
        self,
        settings: TranslatorSettings,
        languages: list[str],
        engine: Callable[..., Engine] = load_engine,
    ):
        self.settings = settings
        self.sampling = Sampling.of(settings.generation)
        engines: dict[str, Engine] = {}
        self.routes: dict[Key, Route] = {}
        for code in languages:
            for direction in DIRECTIONS:
                self.routes[code, direction] = self._route(code, direction, engine, engines)
        self.engines = list(engines.values())
        # Before the first request (Serve waits for the constructor): the prompts that an
        # earlier start kept (milliseconds each), and the first language's; the others are
        # read in the background, between requests.
        self.warmed: list[Key] = []
        now, later = self._read_ahead_plan(languages[0] if languages else None)
        self.warm(now)
        self._reading = threading.Thread(
            target=self._read_in_background, args=(later,), name="read-ahead", daemon=True
        )
        self._reading.start()

    def _route(
        self, code: str, direction: Direction, load: Callable[..., Engine], engines: dict
    ) -> Route:
        """``code`` in ``direction``, on its model's engine (loaded once, kept in ``engines``)."""
        chosen = self.settings.for_language(code, direction)
        if chosen is None:
            raise InvalidRequestError(f"The translator has no model for '{code}' {direction}.")
        key = chosen.model.model_dump_json()
        if key not in engines:
            engines[key] = load(chosen.model, self.settings.batching, self.sampling)
        spec = language(code)
        to_english = direction == "to_english"
        return Route(
            engine=engines[key],
            model=chosen.model,
            prefix=chosen.prefix,
            source_name=spec.name if to_english else "English",
            target_name="English" if to_english else spec.name,
            examples=spec.to_english_examples if to_english else spec.from_english_examples,
            source_rules=Sentences.of(code if to_english else ENGLISH),
        )

    def route(self, source: str, target: str) -> Route:
        """The way from ``source`` to ``target``: one of them English, the other served."""
        if target == ENGLISH and (source, "to_english") in self.routes:
            return self.routes[source, "to_english"]
        if source == ENGLISH and (target, "from_english") in self.routes:
            return self.routes[target, "from_english"]
        served = sorted({code for code, _ in self.routes})
        raise InvalidRequestError(
            f"No translation from '{source}' to '{target}' here: it translates English and "
            f"{', '.join(served) or 'no other language'}, both ways."
        )

    def prompt(self, sentence: str, source: str, target: str) -> list[int]:
        """Token ids that ask for ``sentence`` in the target language.

        A causal model gets the language's few-shot examples first: the same prefix for every
        sentence of that language, so an engine that keeps a prompt's KV cache (llama.cpp) reads
        it once. Examples that do not fit go first, the oldest first; the sentence is kept.
        """
        return self._prompt(self.route(source, target), sentence)

    def _prompt(self, route: Route, sentence: str, begun: str = "") -> list[int]:
        """``begun``: the answer so far, which a causal model goes on from."""
        engine = route.engine
        limit = route.model.max_input_tokens or engine.context_limit
        if engine.is_encoder_decoder:
            return engine.encode(route.prefix + sentence)[-limit:]
        limit -= self.sampling.max_new_tokens
        source, target = route.source_name, route.target_name
        ask = f"{source}: {sentence}\n{target}:" + (f" {begun}" if begun else "")
        for first in range(len(route.examples) + 1):
            shots = "".join(
                f"{source}: {src}\n{target}: {tgt}\n\n" for src, tgt in route.examples[first:]
            )
            ids = engine.encode(shots + ask)
            if len(ids) <= limit:
                return ids
        return ids[-limit:]

    async def stream_sentence(
        self, sentence: str, source: str, target: str
    ) -> AsyncIterator[str | Working]:
        """One sentence's translation as it is generated (the router cuts the sentences), and
        ``Working`` while the engine has had nothing to say for ``WORKING_EVERY_S`` (the
        sentence waits behind others): the router must not take that for a dead replica."""
        route = self.route(source, target)
        pieces = kept_alive(self._sentence(route, sentence), WORKING_EVERY_S, WORKING)
        async with contextlib.aclosing(pieces):  # a caller that leaves stops the engine
            async for piece in pieces:
                yield piece

    async def _sentence(self, route: Route, sentence: str) -> AsyncIterator[str]:
        parts = Parts.of(sentence, titles_apart=not route.engine.is_encoder_decoder)
        if parts.marker:
            yield parts.marker + " "
        for title, separator in parts.titles:
            yield await self._title(route, title)
            yield separator
        async for piece in self._text(route, parts.text):
            yield piece

    async def _title(self, route: Route, title: str) -> str:
        """A list item's title, translated whole (it is short). One word stays as it is: a
        name ("Rome"), or a word that a small model alone turns into a sentence of its own."""
        if len(title.split()) == 1:
            return title.strip()
        text = "".join([piece async for piece in self._text(route, title)]).strip()
        return text if title.rstrip().endswith(".") else text.rstrip(".")  # one it added

    async def _text(self, route: Route, sentence: str) -> AsyncIterator[str]:
        """A sentence's translation; a few-shot model's first answer goes out only once it
        cannot be the sentence given back (``COPY_SHARE``). A list of names or numbers would
        come back as it is, and rightly: a sentence with fewer than ``COPY_WORDS`` lower-case
        words streams as it comes."""
        sentence = sentence.strip()
        if not sentence:
            return
        words = _WORD.findall(sentence)
        source = {word.lower() for word in words}
        lower = [word for word in words if word.islower()]
        guarded = not route.engine.is_encoder_decoder and len(lower) >= COPY_WORDS
        held: list[str] = []
        async with contextlib.aclosing(self._unlooped(route, sentence)) as answer:
            async for piece in answer:
                held.append(piece)
                if not guarded or not _may_be_copy(source, "".join(held), finished=False):
                    break
            else:  # the whole answer, held
                text = "".join(held)
                if not guarded or not _may_be_copy(source, text, finished=True):
                    if text:
                        yield text
                    return
                # Asked again, it may not begin as it did.
                first = tuple(route.engine.encode(" " + text.strip(), special=False)[:1])
                async with contextlib.aclosing(self._unlooped(route, sentence, first)) as again:
                    async for piece in again:
                        yield piece
                return
            yield "".join(held)  # a translation: what was held, then the rest as it comes
            async for piece in answer:
                yield piece

    async def _unlooped(
        self, route: Route, sentence: str, banned: tuple[int, ...] = ()
    ) -> AsyncIterator[str]:
        """The model's answer for ``sentence`` (``_answer``), without a loop (``LOOP_TIMES``).
        A word goes out once it is whole and repeats none of the ``LOOP_WORDS`` before it, or
        is followed by one that does not."""
        words = [word.lower() for word in _WORD.findall(sentence)]
        if _has_loop(words):  # its translation may rightly repeat itself too
            async with contextlib.aclosing(self._answer(route, sentence, banned)) as answer:
                async for piece in answer:
                    yield piece
            return
        text, shown = "", 0  # the answer so far, and how much of it went out
        for tries in range(LOOP_TRIES + 1):
            async with contextlib.aclosing(self._answer(route, sentence, banned, text)) as answer:
                async for piece in answer:
                    text += piece
                    found = list(_WORD.finditer(text))
                    if _LAST_WORD.search(text):  # it may go on in the next piece: held
                        found.pop()
                    words = [word.group(0).lower() for word in found]
                    if (loop := _loop(words)) is not None:
                        break
                    held = min(_runs(words))
                    out = found[held - 1].end() if held else 0
                    if out > shown:
                        yield text[shown:out]
                        shown = out
                else:  # the answer's end
                    if text[shown:]:
                        yield text[shown:]
                    return
            # A loop: the answer goes on from its first time, another way.
            cut = max(found[loop - 1].end(), shown)
            text, again = text[:cut], text[cut:]
            if tries == LOOP_TRIES or route.engine.is_encoder_decoder:
                break
            logger.info("A translation looped on %r; it goes on from its first time", again)
            barred = (*banned, *route.engine.encode(again, special=False)[:1])
            step = self._answer(route, sentence, barred, text, most=1)
            if not (taken := "".join([piece async for piece in step])):
                break  # the other way was to end the sentence there
            text += taken
        if text[shown:]:
            yield text[shown:]

    async def _answer(
        self,
        route: Route,
        sentence: str,
        banned: tuple[int, ...] = (),
        begun: str = "",
        most: int | None = None,
    ) -> AsyncIterator[str]:
        """The model's answer for ``sentence``, piece by piece; ``banned``: tokens it may not
        use; ``begun``: the answer so far, which a causal model goes on from (what it says is
        the rest); ``most``: tokens at most."""
        engine = route.engine
        prompt = self._prompt(route, sentence, begun)
        # A translation is about as long as its source: a cap stops a model that runs on.
        source_tokens = len(engine.encode(sentence, special=False))
        cap = 2 * source_tokens + 16
        if begun:
            cap -= len(engine.encode(begun, special=False))
        cap = min(cap, most or cap)
        if cap <= 0:
            return
        sampling = self.sampling.capped(cap)
        if banned:
            sampling = replace(sampling, banned_tokens=banned)
        started = bool(begun)
        newline = not engine.is_encoder_decoder
        pieces = engine.stream(prompt, sampling, Usage(), newline)
        async with contextlib.aclosing(pieces):  # an early return stops generation at once
            async for piece in pieces:
                if newline:
                    if "\n" in piece:  # the few-shot answer ends at its line
                        piece = piece.split("\n", 1)[0]
                        if piece.strip() or started:
                            yield piece.lstrip() if not started else piece
                        return
                    if not started:
                        piece = piece.lstrip()
                if piece:
                    started = True
                    yield piece

    async def stream(self, text: str, source: str, target: str) -> AsyncIterator[str]:
        """A whole text's translation as it is generated, one sentence after another; code
        blocks stay as they are."""
        route = self.route(source, target)
        previous = None
        for segment in split_sentences(text, route.source_rules):
            if previous is not None:
                yield separator_after(previous)
            if isinstance(segment, Verbatim):  # code, as it was written
                yield segment.text
            else:
                async for piece in self._sentence(route, segment):
                    yield piece
            previous = segment

    async def translate(self, text: str, source: str, target: str) -> str:
        """``text`` in ``source`` (a language code) translated to ``target``, whole."""
        return "".join([piece async for piece in self.stream(text, source, target)]).strip()

    def _read_ahead_plan(self, first: str | None) -> tuple[list[Prompt], list[Prompt]]:
        """The few-shot prompts to put in the engines' slots before the first request, and
        those to read after, in the background, each with its key. Each direction of each
        language that an engine can keep (llama.cpp keeps one prompt per slot) gets a slot, in
        the profile's order, until the engine's slots but one are taken: that one is left for
        the health check's probe. Before the first request: the ``first`` language's, and
        those that an earlier start kept on disk (``model.saved_prompts``), which are
        restored, not read."""
        room = {id(engine): engine.kept_prompts - 1 for engine in self.engines}
        now: list[Prompt] = []
        later: list[Prompt] = []
        left: list[Key] = []
        for key, route in self.routes.items():
            if not route.engine.kept_prompts:
                continue
            if room[id(route.engine)] < 1:
                left.append(key)
                continue
            room[id(route.engine)] -= 1
            # The prompt is all that is kept: its first example's sentence stands for any other.
            prompt = self._prompt(route, route.examples[0][0])
            saved = route.engine.saved(prompt)
            (now if key[0] == first or saved else later).append((key, prompt))
        if left:
            routes = Counter(id(route.engine) for route in self.routes.values())
            # Past the slots, directions in use take turns in them, and each turn reads its
            # prompt again (~0.7 s a sentence on 2 cores, against ~0.15 s).
            logger.warning(
                "No slot left to keep the few-shot prompts of %s: translator.batching."
                "max_batch_size: %d would keep every language's (one slot per language and "
                "direction, and one for the health check)",
                ", ".join(f"{code} {direction}" for code, direction in left),
                max(routes.values()) + 1,
            )
        return now, later

    def warm(self, prompts: list[Prompt], when_idle: bool = False) -> None:
        """Puts the few-shot ``prompts`` (each with its key) in their engines' slots, so that
        a language's first message does not wait for them: about 0.7 s each way on 2 cores
        (1.9 s on slower ones), before its first text. Each is restored from the file an
        earlier start kept, where there is one, else read. ``when_idle``: each waits until no
        request has run on its engine for ``QUIET_S`` (a request that comes meanwhile waits
        for one prompt at most). Each one put in its slot goes to ``warmed``; one that fails
        is left to its first request (the health check tells whether the model works)."""
        started = time.monotonic()
        read: list[Key] = []
        for key, prompt in prompts:
            route = self.routes[key]
            while when_idle and (idle := route.engine.stats.idle_for()) < QUIET_S:
                time.sleep(max(QUIET_S - idle, IDLE_POLL_S))
            try:
                placed = route.engine.read_ahead(prompt, 1)
            except ChatServiceError as error:
                logger.warning("Could not read the %s %s prompt ahead: %s", *key, error)
                continue
            if placed:
                read.append(key)
                self.warmed.append(key)
        if read:
            logger.info(
                "Put the few-shot prompts of %s in their slots %sin %.1f s (read, or restored "
                "from the files of an earlier start)",
                ", ".join(f"{code} {direction}" for code, direction in read),
                "in the background, between requests, " if when_idle else "",
                time.monotonic() - started,
            )

    def _read_in_background(self, prompts: list[Prompt]) -> None:
        try:
            self.warm(prompts, when_idle=True)
        except Exception:  # in a thread: said in the log, or nobody would know
            logger.exception("Stopped reading prompts ahead")
            return
        logger.info(READ_AHEAD_DONE)

    def read_ahead_done(self, timeout: float | None = None) -> bool:
        """Whether every prompt that ``warm`` reads in the background is read, once it is or
        ``timeout`` seconds have passed."""
        self._reading.join(timeout)
        return not self._reading.is_alive()

    async def check_health(self) -> None:
        """Serve replaces this replica when one of its models no longer gives usable output."""
        for engine in self.engines:
            await asyncio.to_thread(engine.probe)

    def activity(self, source: str | None = None, target: str | None = None) -> dict[str, int]:
        """Generations running now and decoding steps so far: of every model, or of the one
        that translates ``source`` to ``target``; ``reading``: 1 while prompts are still read
        ahead in the background (their steps count too)."""
        if source is not None and target is not None:
            found = self.route(source, target).engine.activity()
        else:
            total: Counter[str] = Counter()
            for engine in self.engines:
                total.update(engine.activity())
            found = dict(total)
        return {**found, "reading": int(self._reading.is_alive())}
