"""ChatModel deployment: answers a conversation, streaming text as the model generates it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from serving.config import ChatSettings
from serving.engine import ChatMessage, Engine, EngineDeployment, Sampling, Usage, load_engine
from serving.errors import ChatServiceError, InvalidRequestError
from serving.events import WORKING, WORKING_EVERY_S, PromptInfo, ReplyInfo, Working
from serving.pacing import kept_alive, paced
from serving.stop_sequences import StopSequences

logger = logging.getLogger("ray.serve")  # the replica's own log, as Serve writes it


class ChatModel(EngineDeployment):
    """Streams a reply to ``history + [message]`` (chat-template causal LM or seq2seq model)."""

    def __init__(self, settings: ChatSettings, engine: Callable[..., Engine] = load_engine):
        self.settings = settings
        sampling = Sampling.of(settings.generation)
        self.engine = engine(settings.model, settings.batching, sampling)
        if self.engine.is_encoder_decoder:  # the decoder has the same position limit
            sampling = sampling.capped(self.engine.context_limit - 2)
        self.sampling = sampling
        self.replies = 0  # streaming now: they share the replica's messages (``interval``)
        self.read_ahead = self._read_shared_start_ahead()  # before the first request

    def _start(self) -> list[ChatMessage]:
        """The messages before every conversation's own: the system prompt and the opening
        exchanges."""
        prompt = self.settings.system_prompt
        start = [{"role": "system", "content": prompt}] if prompt else []
        for exchange in self.settings.opening:
            start += [
                {"role": "user", "content": exchange.user},
                {"role": "assistant", "content": exchange.assistant},
            ]
        return start

    def shared_start(self) -> list[int]:
        """The tokens that every conversation's prompt starts with: the chat template's opening,
        the system prompt and the opening exchanges."""
        one, other = (
            self.engine.chat_prompt(self._start() + [{"role": "user", "content": text}])
            for text in ("A", "Z")
        )
        shared = 0
        while shared < min(len(one), len(other)) and one[shared] == other[shared]:
            shared += 1
        return one[:shared]

    def _read_shared_start_ahead(self) -> int:
        """Reads ``shared_start`` into each prompt the engine keeps (llama.cpp's slots) but
        one, left for the health check's probe as in the translator, so that a new conversation
        reads only its own words, in whichever slot it lands. The offline model's 79 tokens
        (24 without its opening exchange, which took about 55 ms on 2 cores) would otherwise be
        read by 8 conversations started at once, one after the other, before their first
        tokens. Returns how many slots hold it; one that fails is left to the first requests
        (the health check tells whether the model works)."""
        if self.engine.is_encoder_decoder or self.engine.kept_prompts < 2:
            return 0
        started = time.monotonic()
        if not (start := self.shared_start()):
            return 0
        try:
            copies = self.engine.read_ahead(start, self.engine.kept_prompts)  # the probe's aside
        except ChatServiceError as error:
            logger.warning("Could not read the shared start ahead: %s", error)
            return 0
        logger.info(
            "Read the conversations' shared start (%d tokens) into %d slots in %.1f s",
            len(start),
            copies,
            time.monotonic() - started,
        )
        return copies

    def interval(self) -> float:
        """The shortest time between two pieces of a reply now: ``stream_interval_s``, or
        longer while so many replies stream (or wait for a slot) that they would send more
        than ``stream_messages_per_s`` pieces a second in all. Each piece costs CPU in this replica,
        the router and the proxy, taken from decoding; 8 replies at once streamed about 15 %
        more tokens a second with 160 ms between pieces than with 50 (docs/how-it-works.md,
        "Pacing")."""
        cap = self.settings.stream_messages_per_s
        return max(self.settings.stream_interval_s, self.replies / cap if cap else 0.0)

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
        start = self._start()
        # Keep whole exchanges: the kept history starts at a user message (or is empty).
        users = {i for i, turn in enumerate(history) if turn["role"] == "user"}
        starts = sorted({0, len(history)} | users)
        for dropped in starts:
            messages = start + history[dropped:] + [{"role": "user", "content": message}]
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

        ``options``: a client's decoding options (``Sampling.with_options``), and ``stop``:
        sequences that end the reply before them (``serving.stop_sequences``).
        """
        sampling = self.sampling.with_options(options)
        stops = StopSequences((options or {}).get("stop") or ())
        prompt, info = self.build_inputs(history, message)
        if info.history_dropped or info.message_truncated:
            logger.info("Prompt cut to fit the model's context: %s", info)
        yield info
        usage = Usage()
        pieces = self.engine.stream(prompt, sampling, usage)
        if stops.sequences:
            pieces = stops.cut(pieces)
        pieces = paced(pieces, self.interval)
        # Queued behind other replies, the engine may say nothing for a long while: the router
        # must not take that for a replica that died.
        pieces = kept_alive(pieces, WORKING_EVERY_S, WORKING)
        self.replies += 1
        try:
            async with aclosing(pieces):  # a caller that leaves stops the engine at once
                async for piece in pieces:
                    yield piece
        finally:
            self.replies -= 1
        ended_by_length = usage.tokens >= sampling.max_new_tokens and not stops.matched
        yield ReplyInfo(usage.tokens, "length" if ended_by_length else "stop")
