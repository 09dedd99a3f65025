"""The engine seam: what a model deployment needs from whatever runs its model.

Two engines keep this contract: ``serving.llama_engine`` runs GGUF files natively with
llama.cpp (continuous batching, prompt reuse), and ``serving.torch_engine`` runs Hugging Face
models with transformers (``generate``, ``@serve.batch``). ``ModelSpec.engine`` picks one;
``auto`` takes llama.cpp for a GGUF file on a CPU and transformers for everything else.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from serving.errors import ModelUnavailableError
from serving.locate import locate
from serving.model_config import BatchSettings, GenerationSettings, ModelSpec

ChatMessage = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Sampling:
    """How one request decodes: the configured generation settings with a client's options."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    # Tokens the reply may not contain anywhere: the translator's second try at a sentence
    # that its first try gave back untranslated bans the token that try began with, and the
    # one step on from a loop bans the token that began the loop's second time.
    banned_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # The one place where the floor gives way to a lower cap (a client's max_tokens, or a
        # translation's length bound): a reply never has to be longer than it may be.
        object.__setattr__(self, "min_new_tokens", min(self.min_new_tokens, self.max_new_tokens))

    @classmethod
    def of(cls, settings: GenerationSettings) -> Sampling:
        return cls(
            max_new_tokens=settings.max_new_tokens,
            min_new_tokens=settings.min_new_tokens,
            do_sample=settings.do_sample,
            temperature=settings.temperature,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
        )

    def capped(self, max_new_tokens: int) -> Sampling:
        """The same decoding with at most ``max_new_tokens`` (never above this one's cap)."""
        return replace(self, max_new_tokens=min(self.max_new_tokens, max_new_tokens))

    def with_options(self, options: dict[str, Any] | None) -> Sampling:
        """A client's options: ``max_new_tokens`` (capped), ``temperature`` (0 is greedy),
        ``top_p``; sampling switches on when either of the last two is given."""
        options = options or {}
        sampling = self
        if "max_new_tokens" in options:
            sampling = sampling.capped(options["max_new_tokens"])
        temperature = options.get("temperature")
        if temperature == 0:
            return replace(sampling, do_sample=False)
        if temperature is not None or "top_p" in options:
            return replace(
                sampling,
                do_sample=True,
                temperature=temperature if temperature is not None else self.temperature,
                top_p=options.get("top_p", self.top_p),
            )
        return sampling


@dataclass
class Usage:
    """Filled in by an engine's stream: the tokens generated for one request, and how many of
    its prompt's tokens came from a kept KV cache instead of being read again."""

    tokens: int = 0
    cached_tokens: int = 0


@dataclass
class GenerationStats:
    """What an engine is doing: generations running now and decoding steps taken so far."""

    active: int = 0
    steps: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last_active: float = field(default=float("-inf"), repr=False)  # time.monotonic()

    def add(self, active: int = 0, steps: int = 0) -> None:
        with self._lock:  # worker threads run side by side
            if active:  # one starts or ends
                self._last_active = time.monotonic()
            self.active += active
            self.steps += steps

    def idle_for(self) -> float:
        """Seconds since the last generation ended: 0 while one runs, infinite before any."""
        with self._lock:
            return 0.0 if self.active else time.monotonic() - self._last_active

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"active": self.active, "steps": self.steps}


class Engine(Protocol):
    """Runs one model for a deployment; every method is safe to call from the event loop."""

    name: str  # "llama.cpp" or "transformers": logs, metrics, the benchmark's engine column
    is_encoder_decoder: bool
    context_limit: int  # most tokens one request may hold, prompt and reply together
    # How many prompts the engine keeps between requests, so that the next prompt with the same
    # start reads only the rest: llama.cpp's slots; 0 for transformers, which keeps none.
    kept_prompts: int
    stats: GenerationStats  # generations running now, decoding steps so far

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special`` adds the model's own start token where it has one
        (a chat template writes its own)."""
        ...

    def decode(self, ids: list[int]) -> str:
        """The text of token ids, special tokens included (prompts, in tests and logs)."""
        ...

    def render_chat(self, messages: list[ChatMessage]) -> str:
        """The conversation in the model's own chat template, ready for the reply."""
        ...

    def chat_prompt(self, messages: list[ChatMessage]) -> list[int]:
        """``render_chat``'s text as token ids, tokenised the way this engine's own chat
        route does it (what ``ChatModel`` counts and sends)."""
        ...

    def stream(
        self, prompt: list[int], sampling: Sampling, usage: Usage, stop_at_newline: bool = False
    ) -> AsyncIterator[str]:
        """The reply's text as it is generated; leaving early stops this request within a
        token. ``usage`` gets the tokens generated once the stream ends."""
        ...

    def read_ahead(self, prompt: list[int], copies: int) -> int:
        """Puts ``prompt`` into ``copies`` more of the prompts the engine keeps (never all of
        them: one is left for the health probe), so that a request that starts with it reads
        only the rest, whichever one it lands in. Returns how many now hold it: 0 for an engine
        that keeps none, or that has no room left."""
        ...

    def saved(self, prompt: list[int]) -> bool:
        """Whether ``read_ahead`` would restore ``prompt`` from a file that an earlier start
        kept (milliseconds), rather than read it."""
        ...

    def probe(self) -> None:
        """Raises ``ModelUnavailableError`` when the model gives no usable output."""
        ...

    def activity(self) -> dict[str, int]: ...


def uses_llama_cpp(spec: ModelSpec, gguf: bool, gpu: bool) -> bool:
    """``auto``: llama.cpp for a GGUF file on a CPU, transformers for the rest."""
    if spec.engine == "auto":
        return gguf and not gpu
    return spec.engine == "llama.cpp"


def gpu_assigned() -> bool:
    """Whether this process may use a GPU: the GPUs Ray gave this replica, else torch's view."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
        return bool(ray.get_gpu_ids())
    import torch

    return torch.cuda.is_available()


def load_engine(spec: ModelSpec, batching: BatchSettings, sampling: Sampling) -> Engine:
    """The engine that ``spec`` asks for, loaded and ready. ``sampling``: the deployment's own,
    which the transformers engine batches."""
    located = locate(spec)
    if uses_llama_cpp(spec, located.gguf_file is not None, gpu_assigned()):
        if located.gguf_file is None:
            raise ModelUnavailableError(
                f"engine: llama.cpp needs a .gguf file, and {spec.source!r} is not one. Point "
                "source at a .gguf file, or choose engine: transformers."
            )
        from serving.llama_engine import LlamaCppEngine

        return LlamaCppEngine(spec, located, batching)
    from serving.torch_engine import TransformersEngine  # torch only where it runs

    return TransformersEngine(spec, batching, sampling)


class EngineDeployment:
    """What the model deployments (ChatModel, Translator) share: the health check and the
    activity counters of their ``engine``."""

    engine: Engine

    async def check_health(self) -> None:
        """Serve replaces this replica when its model no longer gives usable output."""
        await asyncio.to_thread(self.engine.probe)

    def activity(self) -> dict[str, int]:
        """Generations running now and decoding steps so far (proves that a stop stops)."""
        return self.engine.activity()
