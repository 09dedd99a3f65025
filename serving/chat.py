"""ChatModel deployment: answers a conversation, streaming text as the model generates it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from serving.config import ChatSettings
from serving.engine import ChatMessage, Engine, EngineDeployment, Sampling, Usage, load_engine
from serving.errors import InvalidRequestError
from serving.events import WORKING, WORKING_EVERY_S, PromptInfo, ReplyInfo, Working
from serving.pacing import kept_alive, paced

logger = logging.getLogger(__name__)


class ChatModel(EngineDeployment):
    """Streams a reply to ``history + [message]`` (chat-template causal LM or seq2seq model)."""

    def __init__(self, settings: ChatSettings, engine: Callable[..., Engine] = load_engine):
        self.settings = settings
        sampling = Sampling.of(settings.generation)
        self.engine = engine(settings.model, settings.batching, sampling)
        if self.engine.is_encoder_decoder:  # the decoder has the same position limit
            sampling = sampling.capped(self.engine.context_limit - 2)
        self.sampling = sampling

    @property
    def input_budget(self) -> int:
        limit = self.settings.model.max_input_tokens or self.engine.context_limit
        if self.engine.is_encoder_decoder:
            return limit
        return limit - self.sampling.max_new_tokens

    def build_inputs(
        self, history: list[ChatMessage], message: str
    ) -> tuple[list[int], PromptInfo]:
        """The prompt's token ids, dropping the oldest turns to fit, and what was left out."""
        if self.engine.is_encoder_decoder:
            return self._seq2seq_inputs(history, message)
        return self._causal_inputs(history, message)

    def _causal_inputs(
        self, history: list[ChatMessage], message: str
    ) -> tuple[list[int], PromptInfo]:
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
            ids = self.engine.chat_prompt(messages)
            if len(ids) <= self.input_budget:
                return ids, PromptInfo(dropped, len(ids))
        raise InvalidRequestError(
            f"The message is too long for the chat model ({len(ids)} tokens; "
            f"the limit is {self.input_budget}). Shorten it and send it again."
        )

    def _seq2seq_inputs(
        self, history: list[ChatMessage], message: str
    ) -> tuple[list[int], PromptInfo]:
        tokenizer = self.engine.tokenizer  # seq2seq models run on transformers
        turns = [turn["content"] for turn in history] + [message]
        for dropped in range(len(turns)):
            text = self.settings.turn_separator.join(turns[dropped:])
            ids = tokenizer(text)["input_ids"]
            if len(ids) <= self.input_budget:
                return ids, PromptInfo(dropped, len(ids))
        # The message alone is too long: keep its end, as the model reads it (Blenderbot: 128).
        tokenizer.truncation_side = "left"
        ids = tokenizer(message, truncation=True, max_length=self.input_budget)["input_ids"]
        return ids, PromptInfo(len(history), len(ids), message_truncated=True)

    async def stream(
        self, history: list[ChatMessage], message: str, options: dict[str, Any] | None = None
    ) -> AsyncIterator[PromptInfo | str | Working | ReplyInfo]:
        """A ``PromptInfo``, the reply's text pieces as the model generates them (``Working``
        while there is none for ``WORKING_EVERY_S``), a ``ReplyInfo``.

        ``options``: a client's decoding options (``Sampling.with_options``).
        """
        sampling = self.sampling.with_options(options)
        prompt, info = self.build_inputs(history, message)
        if info.history_dropped or info.message_truncated:
            logger.info("Prompt cut to fit the model's context: %s", info)
        yield info
        usage = Usage()
        pieces = paced(self.engine.stream(prompt, sampling, usage), self.settings.stream_interval_s)
        # Queued behind other replies, the engine may say nothing for a long while: the router
        # must not take that for a replica that died.
        pieces = kept_alive(pieces, WORKING_EVERY_S, WORKING)
        async with aclosing(pieces):  # a caller that leaves stops the engine at once
            async for piece in pieces:
                yield piece
        limit = sampling.max_new_tokens
        yield ReplyInfo(usage.tokens, "length" if usage.tokens >= limit else "stop")
