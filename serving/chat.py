"""ChatModel deployment: answers a conversation, streaming text as the model generates it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch

from serving.batching import ModelDeployment, batched_pieces
from serving.config import ChatSettings, ModelSpec
from serving.errors import GenerationError, InvalidRequestError
from serving.protocol import PromptInfo, ReplyInfo
from serving.streaming import GenerationStats, Usage, stream_generate
from serving.translate import apply_threads
from serving.weights import LoadedModel, load

logger = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "user" | "assistant", "content": str}


class ChatModel(ModelDeployment):
    """Streams a reply to ``history + [message]`` (chat-template causal LM or seq2seq model)."""

    def __init__(self, settings: ChatSettings, loader: Callable[[ModelSpec], LoadedModel] = load):
        apply_threads(settings.model)
        self.settings = settings
        self.lm = loader(settings.model)
        self.generate_kwargs = settings.generation.generate_kwargs()
        self.stats = GenerationStats()
        self._init_batching(settings.batching)
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
    ) -> tuple[dict[str, torch.Tensor], PromptInfo]:
        """Tokenised prompt, dropping the oldest turns to fit, and what was left out."""
        if self.lm.is_encoder_decoder:
            return self._seq2seq_inputs(history, message)
        return self._causal_inputs(history, message)

    def _causal_inputs(
        self, history: list[Message], message: str
    ) -> tuple[dict[str, Any], PromptInfo]:
        system = (
            [{"role": "system", "content": self.settings.system_prompt}]
            if self.settings.system_prompt
            else []
        )
        # Keep whole exchanges: the kept history starts at a user message (or is empty).
        users = {i for i, turn in enumerate(history) if turn["role"] == "user"}
        starts = sorted({0, len(history)} | users)
        for dropped in starts:
            messages = system + history[dropped:] + [{"role": "user", "content": message}]
            inputs = self.lm.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            if (length := inputs["input_ids"].shape[1]) <= self.input_budget:
                return dict(inputs), PromptInfo(dropped, length)
        raise InvalidRequestError(
            f"The message is too long for the chat model ({inputs['input_ids'].shape[1]} tokens; "
            f"the limit is {self.input_budget}). Shorten it and send it again."
        )

    def _seq2seq_inputs(
        self, history: list[Message], message: str
    ) -> tuple[dict[str, Any], PromptInfo]:
        tokenizer = self.lm.tokenizer
        turns = [turn["content"] for turn in history] + [message]
        for dropped in range(len(turns)):
            text = self.settings.turn_separator.join(turns[dropped:])
            ids = tokenizer(text, return_tensors="pt")
            if (length := ids["input_ids"].shape[1]) <= self.input_budget:
                return dict(ids), PromptInfo(dropped, length)
        # The message alone is too long: keep its end, as the model reads it (Blenderbot: 128).
        tokenizer.truncation_side = "left"
        ids = tokenizer(message, return_tensors="pt", truncation=True, max_length=self.input_budget)
        return dict(ids), PromptInfo(len(history), self.input_budget, message_truncated=True)

    def decoding(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """The configured generate kwargs with a client's options: ``max_new_tokens`` (never above
        the configured cap), ``temperature`` (0 means greedy) and ``top_p``."""
        kwargs = dict(self.generate_kwargs)
        options = options or {}
        if "max_new_tokens" in options:
            kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], options["max_new_tokens"])
            kwargs["min_new_tokens"] = min(kwargs["min_new_tokens"], kwargs["max_new_tokens"])
        temperature = options.get("temperature")
        if temperature == 0:
            kwargs["do_sample"] = False
            kwargs.pop("temperature", None)
            kwargs.pop("top_p", None)
        elif temperature is not None or "top_p" in options:
            sampling = self.settings.generation
            kwargs.update(
                do_sample=True,
                temperature=temperature if temperature is not None else sampling.temperature,
                top_p=options.get("top_p", sampling.top_p),
            )
        return kwargs

    async def stream(
        self, history: list[Message], message: str, options: dict[str, Any] | None = None
    ) -> AsyncIterator[PromptInfo | str | ReplyInfo]:
        """A ``PromptInfo``, the reply's text pieces as the model generates them, a ``ReplyInfo``.

        ``options``: a client's decoding options (see ``decoding``).
        """
        kwargs = self.decoding(options)
        inputs, info = self.build_inputs(history, message)
        if info.history_dropped or info.message_truncated:
            logger.info("Prompt cut to fit the model's context: %s", info)
        yield info
        usage = Usage()
        if self.batching and self._batchable(kwargs):
            pieces = batched_pieces(self._generate_batch, inputs, kwargs["max_new_tokens"], usage)
        else:
            pieces = stream_generate(self.lm, inputs, kwargs, stats=self.stats, usage=usage)
        try:
            async for piece in pieces:
                yield piece
        except torch.OutOfMemoryError as exc:
            raise GenerationError(
                "The chat model ran out of memory; try a shorter conversation."
            ) from exc
        limit = kwargs["max_new_tokens"]
        yield ReplyInfo(usage.tokens, "length" if usage.tokens >= limit else "stop")

    def _batchable(self, kwargs: dict[str, Any]) -> bool:
        """A request joins the batch unless it asked for its own sampling."""
        keys = ("do_sample", "temperature", "top_p")
        return all(kwargs.get(key) == self.generate_kwargs.get(key) for key in keys)
