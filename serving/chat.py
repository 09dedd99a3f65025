"""ChatModel deployment: answers a conversation, streaming text as the model generates it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch

from serving.config import ChatSettings, ModelSpec
from serving.errors import GenerationError, InvalidRequestError
from serving.streaming import stream_generate
from serving.translate import apply_threads
from serving.weights import LoadedModel, load

logger = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "user" | "assistant", "content": str}


class ChatModel:
    """Streams a reply to ``history + [message]`` (chat-template causal LM or seq2seq model)."""

    def __init__(self, settings: ChatSettings, loader: Callable[[ModelSpec], LoadedModel] = load):
        apply_threads(settings.model)
        self.settings = settings
        self.lm = loader(settings.model)
        self.generate_kwargs = settings.generation.generate_kwargs()
        if self.lm.is_encoder_decoder:  # the decoder has the same position limit as the encoder
            cap = self.lm.context_limit - 2
            self.generate_kwargs["max_new_tokens"] = min(
                self.generate_kwargs["max_new_tokens"], cap
            )

    @property
    def input_budget(self) -> int:
        limit = self.settings.model.max_input_tokens or self.lm.context_limit
        if self.lm.is_encoder_decoder:
            return limit
        return limit - self.generate_kwargs["max_new_tokens"]

    def build_inputs(
        self, history: list[Message], message: str
    ) -> tuple[dict[str, torch.Tensor], int]:
        """Tokenised prompt, dropping the oldest turns to fit; returns it and the turns dropped."""
        if self.lm.is_encoder_decoder:
            return self._seq2seq_inputs(history, message)
        return self._causal_inputs(history, message)

    def _causal_inputs(self, history: list[Message], message: str) -> tuple[dict[str, Any], int]:
        system = (
            [{"role": "system", "content": self.settings.system_prompt}]
            if self.settings.system_prompt
            else []
        )
        for dropped in range(0, len(history) + 1):
            messages = system + history[dropped:] + [{"role": "user", "content": message}]
            inputs = self.lm.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            if inputs["input_ids"].shape[1] <= self.input_budget:
                return dict(inputs), dropped
        raise InvalidRequestError(
            f"The message is too long for the chat model ({inputs['input_ids'].shape[1]} tokens; "
            f"the limit is {self.input_budget}). Shorten it and send it again."
        )

    def _seq2seq_inputs(self, history: list[Message], message: str) -> tuple[dict[str, Any], int]:
        tokenizer = self.lm.tokenizer
        turns = [turn["content"] for turn in history] + [message]
        for dropped in range(len(turns)):
            text = self.settings.turn_separator.join(turns[dropped:])
            ids = tokenizer(text, return_tensors="pt")
            if ids["input_ids"].shape[1] <= self.input_budget:
                return dict(ids), dropped
        # The message alone is too long: keep its end, as the model reads it (Blenderbot: 128).
        tokenizer.truncation_side = "left"
        ids = tokenizer(message, return_tensors="pt", truncation=True, max_length=self.input_budget)
        return dict(ids), len(history)

    async def stream(self, history: list[Message], message: str) -> AsyncIterator[str]:
        inputs, dropped = self.build_inputs(history, message)
        if dropped:
            logger.info("Left %d oldest turns out of the model's view to fit its context.", dropped)
        try:
            async for piece in stream_generate(self.lm, inputs, self.generate_kwargs):
                yield piece
        except torch.OutOfMemoryError as exc:
            raise GenerationError(
                "The chat model ran out of memory; try a shorter conversation."
            ) from exc
