"""The llama.cpp engine on the tiny Llama as a GGUF file: the engine contract, continuous
batching and prompt reuse, with no Ray."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serving.engine import Sampling, Usage, load_engine
from serving.errors import InvalidRequestError, ModelUnavailableError
from serving.llama_engine import LlamaCppEngine
from serving.model_config import BatchSettings, ModelSpec
from serving.prompt_files import PromptFiles
from tests.support import in_separate_slots

GREEDY = Sampling(max_new_tokens=16)


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> LlamaCppEngine:
    spec = ModelSpec(source=str(tiny_gguf), threads=1, context_tokens=512)
    found = load_engine(spec, BatchSettings(max_batch_size=2), GREEDY)
    assert isinstance(found, LlamaCppEngine)  # engine: auto, a .gguf file, no GPU
    return found


@pytest.fixture(scope="module")
def long_engine(tiny_causal_long: Path) -> LlamaCppEngine:
    from serving.testing.tiny_gguf import write_gguf

    spec = ModelSpec(source=str(write_gguf(tiny_causal_long)), threads=1, context_tokens=4096)
    return load_engine(spec, BatchSettings(max_batch_size=2), GREEDY)


async def _reply(engine, prompt: list[int], sampling: Sampling) -> tuple[str, Usage]:
    usage = Usage()
    text = "".join([piece async for piece in engine.stream(prompt, sampling, usage)])
    return text, usage


def test_greedy_replies_repeat_and_stop_at_their_cap(engine: LlamaCppEngine):
    prompt = engine.chat_prompt([{"role": "user", "content": "Hello, how are you today?"}])
    capped = Sampling(max_new_tokens=5, min_new_tokens=5)
    first, usage = asyncio.run(_reply(engine, prompt, capped))
    again, _ = asyncio.run(_reply(engine, prompt, capped))
    assert usage.tokens == 5 and first == again and first


def test_a_request_that_does_not_fit_the_context_is_refused(engine: LlamaCppEngine):
    prompt = engine.encode("Hello, how are you today? " * 200)
    assert len(prompt) > engine.context_limit
    with pytest.raises(InvalidRequestError, match="context"):
        asyncio.run(_reply(engine, prompt, GREEDY))


def test_the_chat_prompt_uses_the_models_own_template(engine: LlamaCppEngine):
    prompt = engine.chat_prompt([{"role": "user", "content": "Hi"}])
    assert engine.decode(prompt) == "<|user|>Hi</s><|assistant|>"


def test_the_few_shot_prefix_is_read_once_and_reused(engine: LlamaCppEngine):
    prefix = "French: Bonjour\nEnglish: Hello\n\nFrench: Merci\nEnglish: Thanks\n\n"
    first = engine.encode(prefix + "French: Il fait beau.\nEnglish:")
    second = engine.encode(prefix + "French: Allons au parc.\nEnglish:")
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    _, cold = asyncio.run(_reply(engine, first, Sampling(max_new_tokens=3)))
    _, warm = asyncio.run(_reply(engine, second, Sampling(max_new_tokens=3)))
    assert warm.cached_tokens >= shared - 1 > 10  # the slot kept the shared prefix's KV cache
    assert cold.cached_tokens < warm.cached_tokens


def _prompt_tokens_read(engine: LlamaCppEngine) -> int:
    """Prompt tokens that llama.cpp has computed since it started (not those found cached)."""
    found = re.search(r"^llamacpp:prompt_tokens_total (\d+)", engine.server.handle_metrics(), re.M)
    return int(found.group(1))


def _both_find(engine: LlamaCppEngine, prefix: list[int]) -> list[int]:
    """Two requests that start with ``prefix``, at once in two slots: the prefix tokens each
    found already read."""

    async def both() -> list[Usage]:
        endings = ("French: Il fait beau.\nEnglish:", "French: Allons au parc.\nEnglish:")
        asked = [prefix + engine.encode(ending, special=False) for ending in endings]
        return [
            usage for _, usage in await asyncio.gather(*(_reply(engine, p, GREEDY) for p in asked))
        ]

    found = in_separate_slots(engine, lambda: asyncio.run(both()), requests=2)
    return [min(usage.cached_tokens, len(prefix)) for usage in found]


def test_a_prompt_read_ahead_is_kept_on_disk_and_the_next_start_restores_it(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The first engine reads a prompt ahead into two slots and keeps its KV in the cache
    folder. An engine built the same way later (the next start, a replica added) restores it
    into both and computes none of it. A file that llama.cpp refuses is read again and
    replaced; with ``saved_prompts: false`` nothing is left on disk."""
    monkeypatch.setenv("POLYGLOT_CACHE", str(tmp_path))
    folder = tmp_path / "llama-prompts"

    def started(**settings) -> LlamaCppEngine:
        spec = ModelSpec(source=str(tiny_gguf), threads=1, context_tokens=512, **settings)
        return load_engine(spec, BatchSettings(max_batch_size=3), GREEDY)

    first = started()
    prefix = first.encode("French: Bonjour\nEnglish: Hello\n\n" * 4)
    assert first.read_ahead(prefix, 5) == 2  # the third slot is the health probe's
    assert first.read_ahead(prefix, 1) == 0
    assert _prompt_tokens_read(first) == len(prefix)  # read once, copied into the other slot
    [kept] = folder.glob("*.bin")

    second = started()
    assert second.read_ahead(prefix, 2) == 2
    assert _prompt_tokens_read(second) == 0
    assert _both_find(second, prefix) == [len(prefix), len(prefix)]

    kept.write_bytes(b"not a llama.cpp slot file")
    damaged = started()
    assert damaged.read_ahead(prefix, 2) == 2
    assert _prompt_tokens_read(damaged) == len(prefix)
    assert _both_find(damaged, prefix) == [len(prefix), len(prefix)]
    fourth = started()
    fourth.read_ahead(prefix, 2)
    assert _prompt_tokens_read(fourth) == 0  # the file was written again

    for old in folder.iterdir():
        old.unlink()

    def disk_full(*_) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:  # the slot is read all the same, nothing to copy
        patched.setattr(PromptFiles, "keep", disk_full)
        assert started().read_ahead(prefix, 2) == 1
    assert list(folder.iterdir()) == []  # no draft left behind

    unsaved = started(saved_prompts=False)
    assert unsaved.read_ahead(prefix, 2) == 2
    assert _both_find(unsaved, prefix) == [len(prefix), len(prefix)]
    assert list(folder.iterdir()) == []


def test_llama_cpp_gets_a_thread_count_for_one_sequence_and_one_for_batches(
    tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
):
    """One conversation's decoding steps run on ``threads``; prompts and the steps of several
    conversations at once run on ``batch_threads``, which defaults to ``threads``. 'auto' is
    counted in the engine's process: a thread per physical core, and every usable CPU."""
    import xllamacpp

    given, real = [], xllamacpp.Server

    def server(params):
        given.append((params.cpuparams.n_threads, params.cpuparams_batch.n_threads))
        return real(params)

    monkeypatch.setattr(xllamacpp, "Server", server)
    monkeypatch.setattr("serving.model_config.physical_cores", lambda: 1)
    monkeypatch.setattr("serving.model_config.usable_cpus", lambda: [0, 1, 2])
    auto = {"threads": "auto", "batch_threads": "auto"}
    for threads in ({"threads": 1, "batch_threads": 2}, {"threads": 2}, auto):
        spec = ModelSpec(source=str(tiny_gguf), context_tokens=256, saved_prompts=False, **threads)
        engine = load_engine(spec, BatchSettings(max_batch_size=2), GREEDY)
        text, usage = asyncio.run(_reply(engine, engine.encode("Hello"), GREEDY))
        assert usage.tokens > 0, text
    assert given == [(1, 2), (2, 2), (1, 3)]


def test_leaving_a_stream_stops_its_generation(long_engine: LlamaCppEngine):
    endless = Sampling(max_new_tokens=3000, min_new_tokens=3000)

    async def leave_after(count: int) -> None:
        stream = long_engine.stream(long_engine.encode("Hello"), endless, Usage())
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == count:
                break
        await stream.aclose()
        for _ in range(200):  # the request's thread ends at its next token
            if long_engine.activity()["active"] == 0:
                return
            await asyncio.sleep(0.01)

    before = long_engine.activity()["steps"]
    asyncio.run(leave_after(20))
    stopped = long_engine.activity()
    assert stopped["active"] == 0
    assert stopped["steps"] - before < 100  # of 3000: it stopped, not ran on


def test_a_new_request_joins_the_running_batch(long_engine: LlamaCppEngine):
    """Continuous batching: a short request that arrives while a long one decodes gets its
    first token and its end long before the long one ends, not after it."""
    long_reply = Sampling(max_new_tokens=1500, min_new_tokens=1500)
    short_reply = Sampling(max_new_tokens=8, min_new_tokens=8)

    async def race() -> tuple[int, int]:
        long_usage = Usage()
        progress: list[int] = []

        async def run_long() -> None:
            async for _ in long_engine.stream(long_engine.encode("Hello"), long_reply, long_usage):
                progress.append(1)

        runner = asyncio.create_task(run_long())
        while len(progress) < 50:
            await asyncio.sleep(0.001)
        text, usage = await _reply(long_engine, long_engine.encode("Bonjour"), short_reply)
        assert usage.tokens == 8
        at_short_end = len(progress)  # decoded together: about 50 + 8 steps, never 1500
        await runner
        return at_short_end, long_usage.tokens

    at_short_end, long_total = asyncio.run(race())
    assert long_total == 1500
    assert at_short_end < 500, "the short request waited for the long one"


def _anonymous_mib() -> float:
    """This process's private memory: where llama.cpp keeps KV caches and copies of them."""
    with open("/proc/self/smaps_rollup") as rollup:
        line = next(line for line in rollup if line.startswith("Anonymous:"))
    return int(line.split()[1]) / 1024


def test_memory_stays_flat_however_many_distinct_prompts_pass_through(
    long_engine: LlamaCppEngine,
):
    """llama.cpp's own default copies each prompt that leaves its slot into host memory, up to
    8 GiB: a replica would grow with every conversation it has served. Here 24 prompts of 3300
    tokens each take turns in two slots: each copy would be about 1 MiB."""

    async def serve_prompts(first: int, count: int) -> None:
        for number in range(first, first + count):
            text = f"Conversation {number}: " + "the cat sat on the mat " * 300
            await _reply(long_engine, long_engine.encode(text), Sampling(max_new_tokens=1))

    asyncio.run(serve_prompts(0, 2))  # both slots have held a long prompt
    before = _anonymous_mib()
    asyncio.run(serve_prompts(2, 24))
    grown = _anonymous_mib() - before
    assert grown < 12, f"{grown:.0f} MiB more after 24 prompts"


# Loads a GGUF file (argv 1) with its KV cache in argv 2, in a process of its own: a process
# that freed memory before reuses it, and its growth says nothing. Prints what the load added
# (MiB) and a 4-token reply.
_LOAD = textwrap.dedent("""
    import asyncio, json, sys
    from serving.engine import Sampling, Usage, load_engine
    from serving.model_config import BatchSettings, ModelSpec
    from tests.test_llama_engine import _anonymous_mib as anonymous_mib

    def load(kv_cache_type, context_tokens):
        spec = ModelSpec(
            source=sys.argv[1], threads=1, context_tokens=context_tokens,
            kv_cache_type=kv_cache_type,
        )
        return load_engine(spec, BatchSettings(max_batch_size=8), Sampling(max_new_tokens=4))

    first = load("f16", 64)  # what the first llama.cpp of a process sets up, once
    before = anonymous_mib()
    engine = load(sys.argv[2], 32_768)
    grown = anonymous_mib() - before
    usage, sampling = Usage(), Sampling(max_new_tokens=4, min_new_tokens=4)

    async def reply():
        return "".join([p async for p in engine.stream(engine.encode("Hello"), sampling, usage)])

    text = asyncio.run(reply())
    print(json.dumps({"grown": grown, "tokens": usage.tokens, "text": text}))
""")


def test_a_kv_cache_in_q8_0_takes_about_half_the_memory_and_still_replies(tmp_path: Path):
    """llama.cpp reserves every slot's KV cache as it loads: the offline chat model's takes
    360 MiB in f16 and 191 MiB in q8_0."""
    from serving.testing.tiny_gguf import write_gguf
    from serving.testing.tiny_models import build_causal

    gguf = write_gguf(build_causal(tmp_path, positions=32_768, heads=1))

    def loaded(kv_cache_type: str) -> dict:
        run = [sys.executable, "-c", _LOAD, str(gguf), kv_cache_type]
        done = subprocess.run(run, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.splitlines()[-1])

    f16, q8_0 = loaded("f16"), loaded("q8_0")
    # 8 slots of 32768 tokens, 2 layers, K and V 32 wide: 64 MiB in f16, 34 in q8_0.
    assert f16["grown"] - q8_0["grown"] > 20, (f16, q8_0)
    assert all(found["tokens"] == 4 and found["text"] for found in (f16, q8_0)), (f16, q8_0)


def test_a_model_whose_heads_do_not_fit_q8_0_blocks_says_which_setting_to_change(
    tiny_gguf: Path,
):
    spec = ModelSpec(source=str(tiny_gguf), threads=1, context_tokens=512, kv_cache_type="q8_0")
    with pytest.raises(ModelUnavailableError, match="try model.kv_cache_type: f16"):
        load_engine(spec, BatchSettings(max_batch_size=2), GREEDY)
