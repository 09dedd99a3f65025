"""The llama.cpp engine: GGUF files run as they are, several conversations in one context.

``xllamacpp`` (a prebuilt wheel) runs llama.cpp's own server inside this process. Its slots give
continuous batching: a request joins the running batch at the next decoding step. Each slot keeps
the KV cache of its last prompt, so a conversation's next turn, or the translators' few-shot
prefix, is not read again (``cache_prompt``). Calls block, so each runs in its own thread; a
streaming callback hands each token's text to the event loop and says when to stop.

Tokenising and the chat template go through the same server's ``/tokenize`` and
``/apply-template`` routes on loopback (its Python surface has no such calls), behind a random
API key, so this replica needs neither torch nor transformers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from serving.engine import ChatMessage, GenerationStats, Sampling, Usage
from serving.errors import GenerationError, InvalidRequestError, ModelUnavailableError
from serving.locate import Located
from serving.model_config import BatchSettings, ModelSpec
from serving.prompt_files import PromptFiles

logger = logging.getLogger("ray.serve")

DEFAULT_CONTEXT = 2048  # tokens per slot; llama.cpp reserves the KV cache of every slot up front


class LlamaCppEngine:
    """One GGUF model on llama.cpp, with ``slots`` conversations decoded together."""

    name = "llama.cpp"
    is_encoder_decoder = False

    def __init__(self, spec: ModelSpec, located: Located, batching: BatchSettings) -> None:
        import xllamacpp

        started = time.monotonic()
        path = Path(located.path) / str(located.gguf_file)
        self.slots = batching.max_batch_size
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self.slots
        # Split evenly: each slot has its own part of the KV cache, reserved up front.
        params.n_ctx = (spec.context_tokens or DEFAULT_CONTEXT) * self.slots
        params.kv_unified = False
        # llama.cpp's fit sizes the settings left unset to the device's free memory, with a dry
        # run of the load; every one that matters on a CPU is set here, and the dry run took
        # half of Gemma's load on 2 cores (1.1 of 2.3 s; 0.1-0.4 s of SmolLM2's 0.7-1.0).
        params.fit_params = False
        # q8_0 holds the cache in half the memory; llama.cpp then turns on flash attention.
        kv_type = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{spec.kv_cache_type.upper()}")
        params.cache_type_k = params.cache_type_v = kv_type
        # Sliding-window layers (Gemma 3) otherwise keep too little KV for a prefix to be reused,
        # and every few-shot prompt is read again; a slot no longer than the window costs nothing.
        params.swa_full = True
        # A slot's last prompt is copied to host memory before the slot takes another one;
        # llama.cpp's default cap (8 GiB) makes that a slow leak: a translator grows ~1.5 MB per
        # sentence, for a prefix its slots keep anyway.
        params.cache_ram_mib = spec.prompt_cache_mib
        # Where the KV of prompts read ahead is saved (``read_ahead``): the cache folder, for the
        # next start, else a folder of this engine's own, to copy one into other slots. A file
        # restores only into a context of as many slots (llama.cpp refuses it otherwise).
        cache = {"kv": spec.kv_cache_type, "slots": self.slots, "context": params.n_ctx}
        build = xllamacpp.__version__
        self._prompts = PromptFiles.in_cache(path, build, cache) if spec.saved_prompts else None
        self._slot_files = None
        if self._prompts is None:
            self._slot_files = tempfile.TemporaryDirectory(prefix="llama-slots-")
            self._prompts = PromptFiles(Path(self._slot_files.name), build)
        self._read_ahead_slots = 0
        # llama.cpp joins the folder and a file name as they are: it ends with the separator.
        params.slot_save_path = os.path.join(self._prompts.folder, "")
        # llama.cpp decodes a step of one token on ``threads``, and a step of several (a prompt,
        # or a token for each of several conversations) on ``batch_threads``.
        threads = spec.decode_threads() or 1
        batch_threads = spec.step_threads() or threads
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = batch_threads  # defaults to every core otherwise
        params.verbosity = 0  # errors only: llama.cpp logs every request at its default
        self._key = secrets.token_urlsafe(24)
        params.api_keys = [self._key]  # its loopback HTTP server answers nobody else
        params.endpoint_metrics = True  # decoding steps, for activity()
        try:
            self.server = xllamacpp.Server(params)
        except Exception as exc:  # a damaged or foreign file, or a cache it cannot hold
            hint = ""
            if spec.kv_cache_type != "f16":  # its blocks of 32 must tile each attention head
                hint = f" (with its KV cache in {spec.kv_cache_type}: try model.kv_cache_type: f16)"
            raise ModelUnavailableError(f"llama.cpp cannot load {path}{hint}: {exc}") from None
        host, _, port = self.server.listening_address.rpartition("//")[2].partition(":")
        self._address = (host, int(port))
        # A slot's context, as llama.cpp settled it (never above the model's trained context).
        self.context_limit = self._call("GET", "/props")["default_generation_settings"]["n_ctx"]
        self.stats = GenerationStats()
        self._probed_steps = 0
        logger.info(
            "Loaded %s on llama.cpp (%d slots of %d tokens, KV cache in %s, threads: %d, "
            "for batches: %d) in %.1f s",
            path.name,
            self.slots,
            self.context_limit,
            spec.kv_cache_type,
            threads,
            batch_threads,
            time.monotonic() - started,
        )

    def _call(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        connection = http.client.HTTPConnection(*self._address, timeout=30)
        try:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"}
            connection.request(method, route, json.dumps(body) if body else None, headers)
            response = connection.getresponse()
            data = json.loads(response.read())
        finally:
            connection.close()
        if response.status != 200:
            raise ModelUnavailableError(f"llama.cpp {route} failed: {data}")
        return data

    def encode(self, text: str, special: bool = True) -> list[int]:
        body = {"content": text, "add_special": special, "parse_special": True}
        return self._call("POST", "/tokenize", body)["tokens"]

    def decode(self, ids: list[int]) -> str:
        return self._call("POST", "/detokenize", {"tokens": ids})["content"]

    def render_chat(self, messages: list[ChatMessage]) -> str:
        return self._call("POST", "/apply-template", {"messages": messages})["prompt"]

    def chat_prompt(self, messages: list[ChatMessage]) -> list[int]:
        # As llama.cpp's own chat route does: the template's text, special tokens parsed.
        return self.encode(self.render_chat(messages), special=True)

    def _request(self, prompt: list[int], sampling: Sampling, stop_at_newline: bool) -> dict:
        request: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": sampling.max_new_tokens,
            "stream": True,
            "cache_prompt": True,
            "repeat_penalty": sampling.repetition_penalty,
            # llama.cpp has no lower bound on length: a request that asks for one runs to its cap.
            "ignore_eos": sampling.min_new_tokens > 0,
            # Each piece then says how many tokens were decoded so far: the server sends no
            # piece for a token that ends inside a character, so counting pieces falls short.
            "timings_per_token": True,
        }
        if sampling.do_sample:  # transformers' defaults: top-k 50, no min-p
            request.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=50)
            request["min_p"] = 0.0
        else:
            request["temperature"] = 0.0
        if stop_at_newline:
            request["stop"] = ["\n"]
        if sampling.banned_tokens:
            request["logit_bias"] = [[token, False] for token in sampling.banned_tokens]
        return request

    async def stream(
        self, prompt: list[int], sampling: Sampling, usage: Usage, stop_at_newline: bool = False
    ) -> AsyncIterator[str]:
        if len(prompt) + sampling.max_new_tokens > self.context_limit:
            raise InvalidRequestError(
                f"The prompt ({len(prompt)} tokens) and the reply ({sampling.max_new_tokens}) do "
                f"not fit the model's context of {self.context_limit} tokens."
            )
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()
        decoded = [0]  # tokens decoded so far, as the server counts them

        def post(item: str | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the loop has closed: its reader left first, nobody reads
                cancelled.set()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if "error" in chunk:
                post(_as_error(chunk["error"]))
                return True
            choice = (chunk.get("choices") or [{}])[0]
            # Counted before the text goes out: a caller that stops at this text reads it.
            count = (chunk.get("timings") or {}).get("predicted_n", decoded[0])
            if reported := chunk.get("usage"):
                count = max(count, reported.get("completion_tokens", 0))
            if count > decoded[0]:
                self.stats.add(steps=count - decoded[0])  # the health check's sign of life
                decoded[0] = count
            if text := choice.get("text"):
                post(text)
            if reported:
                details = reported.get("prompt_tokens_details") or {}
                usage.cached_tokens = details.get("cached_tokens", 0)
            return cancelled.is_set()  # True ends this request within a token

        def run() -> None:
            self.stats.add(active=1)
            try:
                request = self._request(prompt, sampling, stop_at_newline)
                self.server.handle_completions(request, on_chunk)
            except BaseException as exc:  # handed to the consumer, never lost in the thread
                post(exc)
            finally:
                self.stats.add(active=-1)
                post(None)

        # A thread per request, not the loop's small default pool: requests past the slots wait
        # in llama.cpp's own queue, and none may starve the others' threads.
        worker = threading.Thread(target=run, name="llama.cpp request", daemon=True)
        worker.start()
        try:
            while (piece := await pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            cancelled.set()
            usage.tokens = decoded[0]

    @property
    def kept_prompts(self) -> int:
        """Each slot keeps its last prompt's KV."""
        return self.slots

    def read_ahead(self, prompt: list[int], copies: int) -> int:
        """Puts ``prompt``'s KV into the next ``copies`` slots that hold nothing read ahead,
        never the last one: the health probe takes that one, the free slot that holds nothing.

        The first slot restores it from the file that an earlier start kept (a few
        milliseconds), or reads it and keeps that file. The others copy it through the file,
        where reading it again in each would take the cores that the other replicas need at
        start-up. Later requests take, of the free slots, the one whose kept prompt shares the
        most of their start."""
        first = self._read_ahead_slots
        copies = min(copies, self.slots - 1 - first)
        if copies < 1:
            return 0
        self._read_ahead_slots += copies
        name = self._prompts.find(prompt)
        if name is None or not self._restored(name, first):
            request = {"prompt": prompt, "max_tokens": 1, "temperature": 0.0, "id_slot": first}
            result = self.server.handle_completions({**request, "cache_prompt": True})
            if "error" in result:
                raise _as_error(result["error"])
            if (name := self._saved(prompt, first)) is None:
                self._read_ahead_slots = first + 1  # read, but nothing to copy it from
                return 1
        for slot in range(first + 1, first + copies):
            self._call("POST", f"/slots/{slot}?action=restore", {"filename": name})
        if self._slot_files is not None:  # copied: nothing is kept for a next start
            self._prompts.forget(name)
        return copies

    def saved(self, prompt: list[int]) -> bool:
        return self._slot_files is None and self._prompts.find(prompt) is not None

    def _restored(self, name: str, slot: int) -> bool:
        try:
            self._call("POST", f"/slots/{slot}?action=restore", {"filename": name})
        except ModelUnavailableError as error:  # another llama.cpp build or model, or damaged
            logger.warning("Reading a prompt again: llama.cpp refused its saved KV (%s)", error)
            self._prompts.forget(name)
            return False
        return True

    def _saved(self, prompt: list[int], slot: int) -> str | None:
        """The file of ``slot``'s KV, written; None where it could not be (a full disk)."""
        draft = self._prompts.draft(prompt)
        try:
            self._call("POST", f"/slots/{slot}?action=save", {"filename": draft})
            return self._prompts.keep(draft, prompt)
        except (ModelUnavailableError, OSError) as error:
            logger.warning("A prompt read ahead could not be saved: %s", error)
            self._prompts.forget(draft)
            return None

    def probe(self) -> None:
        """Tokens flowed since the last probe, or one token of a fixed prompt comes out.

        Under load every slot may be busy, and a probe would queue behind them: tokens that
        were produced meanwhile already show that the model works.
        """
        steps = self.stats.snapshot()["steps"]
        if steps != self._probed_steps:
            self._probed_steps = steps
            return
        # No start-of-text token: llama.cpp gives a request the free slot whose kept prompt
        # shares the most of its start, and "<bos>Hello" shares its first token with every
        # prompt a slot keeps. It would push one out (a few-shot prefix the translator read
        # ahead); this one shares nothing and takes the slot used longest ago, then its own.
        result = self.server.handle_completions(
            {"prompt": self.encode("Hello", special=False), "max_tokens": 1, "temperature": 0.0}
        )
        if "error" in result or not result.get("choices"):
            raise ModelUnavailableError(f"The model fails to generate: {result.get('error')}")

    def activity(self) -> dict[str, int]:
        """Requests running now, and llama.cpp's own count of decoding steps (``llama_decode``
        calls, each of which advances every busy slot by a token)."""
        found = re.search(r"^llamacpp:n_decode_total (\d+)", self.server.handle_metrics(), re.M)
        return {"active": self.stats.active, "steps": int(found.group(1)) if found else 0}


def _as_error(error: dict[str, Any]) -> Exception:
    if error.get("type") == "exceed_context_size_error":
        return InvalidRequestError(
            "The conversation is too long for the model's context. Start a new conversation."
        )
    return GenerationError(f"The model failed while answering: {error.get('message', error)}")
