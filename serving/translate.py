"""Translator deployment: one class, bound twice in the graph (fr->en and en->fr)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import torch

from serving.batching import ModelDeployment, batched_pieces
from serving.config import ModelSpec, TranslatorSettings
from serving.errors import GenerationError
from serving.sentences import separator_after, split_sentences
from serving.streaming import GenerationStats, Usage, stream_generate
from serving.weights import LoadedModel, load

# A list marker or heading at the start of a sentence: kept as is, not sent to the model.
_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•]|#+)\s+")


def apply_threads(spec: ModelSpec) -> None:
    if spec.threads:
        torch.set_num_threads(spec.threads)


class Translator(ModelDeployment):
    """Translates text sentence by sentence with a seq2seq model or a few-shot causal LM."""

    def __init__(
        self, settings: TranslatorSettings, loader: Callable[[ModelSpec], LoadedModel] = load
    ):
        apply_threads(settings.model)
        self.settings = settings
        self.lm = loader(settings.model)
        self.stats = GenerationStats()
        self.generate_kwargs = settings.generation.generate_kwargs()
        self._init_batching(settings.batching)

    def _inputs(self, sentence: str) -> dict[str, torch.Tensor]:
        prompt = self.settings.prompt
        if self.lm.is_encoder_decoder:
            text = prompt.prefix + sentence
        else:
            shots = "".join(
                f"{prompt.source_name}: {src}\n{prompt.target_name}: {tgt}\n\n"
                for src, tgt in prompt.examples
            )
            text = f"{shots}{prompt.source_name}: {sentence}\n{prompt.target_name}:"
        limit = self.settings.model.max_input_tokens or self.lm.context_limit
        if not self.lm.is_encoder_decoder:
            limit -= self.settings.generation.max_new_tokens
        self.lm.tokenizer.truncation_side = "left"  # keep the sentence, drop old examples first
        return self.lm.tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)

    async def _sentence(self, sentence: str) -> AsyncIterator[str]:
        marker = _MARKER.match(sentence)
        if marker:
            yield marker.group(0).strip() + " "
            sentence = sentence[marker.end() :]
        sentence = sentence.replace("**", "").strip()  # markdown emphasis confuses small models
        if not sentence:
            return
        inputs = self._inputs(sentence)
        kwargs = self.settings.generation.generate_kwargs()
        # A translation is about as long as its source: a cap stops a model that runs on.
        source_tokens = len(self.lm.tokenizer(sentence)["input_ids"])
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], 2 * source_tokens + 16)
        kwargs["min_new_tokens"] = min(kwargs["min_new_tokens"], kwargs["max_new_tokens"])
        started = False
        newline = not self.lm.is_encoder_decoder
        if self.batching:
            pieces = batched_pieces(
                self._generate_batch, inputs, kwargs["max_new_tokens"], Usage(), newline
            )
        else:
            pieces = stream_generate(
                self.lm, inputs, kwargs, stop_at_newline=newline, stats=self.stats
            )
        async for piece in pieces:
            if not self.lm.is_encoder_decoder:
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
        """Yield the translation as it is generated, one sentence after another."""
        try:
            previous = None
            for sentence in split_sentences(text):
                if previous is not None:
                    yield separator_after(previous)
                async for piece in self._sentence(sentence):
                    yield piece
                previous = sentence
        except torch.OutOfMemoryError as exc:
            raise GenerationError(
                "The translator ran out of memory; try a shorter message."
            ) from exc

    async def translate(self, text: str) -> str:
        return "".join([piece async for piece in self.stream(text)]).strip()
