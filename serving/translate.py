"""Translator deployment: one class, bound twice in the graph (fr->en and en->fr)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable

from serving.config import TranslatorSettings
from serving.engine import Engine, EngineDeployment, Sampling, Usage, load_engine
from serving.sentences import separator_after, split_sentences

# A list marker or heading at the start of a sentence: kept as is, not sent to the model.
_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•]|#+)\s+")


class Translator(EngineDeployment):
    """Translates text sentence by sentence with a seq2seq model or a few-shot causal LM."""

    def __init__(self, settings: TranslatorSettings, engine: Callable[..., Engine] = load_engine):
        self.settings = settings
        self.sampling = Sampling.of(settings.generation)
        self.engine = engine(settings.model, settings.batching, self.sampling)

    def prompt(self, sentence: str) -> list[int]:
        """Token ids that ask for ``sentence`` in the target language.

        A causal model gets the few-shot examples first: the same prefix for every sentence, so
        an engine that keeps a prompt's KV cache (llama.cpp) reads it once. Examples that do not
        fit go first, the oldest first; the sentence itself is kept.
        """
        prompt = self.settings.prompt
        limit = self.settings.model.max_input_tokens or self.engine.context_limit
        if self.engine.is_encoder_decoder:
            return self.engine.encode(prompt.prefix + sentence)[-limit:]
        limit -= self.sampling.max_new_tokens
        ask = f"{prompt.source_name}: {sentence}\n{prompt.target_name}:"
        for first in range(len(prompt.examples) + 1):
            shots = "".join(
                f"{prompt.source_name}: {src}\n{prompt.target_name}: {tgt}\n\n"
                for src, tgt in prompt.examples[first:]
            )
            ids = self.engine.encode(shots + ask)
            if len(ids) <= limit:
                return ids
        return ids[-limit:]

    async def stream_sentence(self, sentence: str) -> AsyncIterator[str]:
        """One sentence's translation as it is generated (the router cuts the sentences)."""
        marker = _MARKER.match(sentence)
        if marker:
            yield marker.group(0).strip() + " "
            sentence = sentence[marker.end() :]
        sentence = sentence.replace("**", "").strip()  # markdown emphasis confuses small models
        if not sentence:
            return
        prompt = self.prompt(sentence)
        # A translation is about as long as its source: a cap stops a model that runs on.
        source_tokens = len(self.engine.encode(sentence, special=False))
        sampling = self.sampling.capped(2 * source_tokens + 16)
        started = False
        newline = not self.engine.is_encoder_decoder
        pieces = self.engine.stream(prompt, sampling, Usage(), newline)
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

    async def stream(self, text: str) -> AsyncIterator[str]:
        """A whole text's translation as it is generated, one sentence after another."""
        previous = None
        for sentence in split_sentences(text):
            if previous is not None:
                yield separator_after(previous)
            async for piece in self.stream_sentence(sentence):
                yield piece
            previous = sentence

    async def translate(self, text: str) -> str:
        return "".join([piece async for piece in self.stream(text)]).strip()
