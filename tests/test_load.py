"""Load on real processes: many conversations at once, a full queue, and a soak for memory."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets
from ray import serve

from bench.run import app_memory_mib, wait_healthy
from tests.tiny_gguf import write_gguf
from tests.tiny_models import tiny_config


async def _conversation(
    url: str, user: int, turns: int, streaming: asyncio.Event | None = None
) -> list[dict]:
    """One user's conversation; each turn's message names the user and the turn.

    ``streaming`` is set when the first reply's first text arrives: the model is running it.
    """
    outcomes, history = [], []
    async with websockets.connect(url, open_timeout=60) as socket:
        for turn in range(turns):
            message = f"I am user {user} and this is my turn {turn}. Hello!"
            await socket.send(json.dumps({"message": message, "history": history}))
            while (event := json.loads(await socket.recv()))["type"] not in ("done", "error"):
                if streaming is not None and event["type"] == "delta":
                    streaming.set()
            outcomes.append({"message": message, **event})
            if event["type"] == "done":
                history += [
                    {"role": "user", "content": event["message_en"]},
                    {"role": "assistant", "content": event["reply_en"]},
                ]
    return outcomes


def _run(url: str, users: int, turns: int) -> list[dict]:
    async def everyone():
        return await asyncio.gather(*(_conversation(url, user, turns) for user in range(users)))

    return [outcome for outcomes in asyncio.run(everyone()) for outcome in outcomes]


def test_32_conversations_at_once_are_all_answered_and_never_mixed_up(tiny_app: str):
    url = tiny_app.replace("http://", "ws://") + "/api/chat"
    outcomes = _run(url, users=32, turns=3)
    assert len(outcomes) == 96
    refused = [o for o in outcomes if o["type"] == "error"]
    assert all(o["code"] == "busy" for o in refused), refused[:3]
    answered = [o for o in outcomes if o["type"] == "done"]
    assert answered and all(o["reply"].strip() for o in answered)
    # Each reply belongs to its own request: the server's record of the message is the message.
    assert all(o["message_en"] == o["message"] for o in answered)


def test_memory_stays_flat_over_a_soak_of_hundreds_of_turns(tiny_app: str):
    url = tiny_app.replace("http://", "ws://") + "/api/chat"
    _run(url, users=16, turns=4)  # warm up: caches, pools, first batches
    before = app_memory_mib()["total_mib"]
    outcomes = _run(url, users=16, turns=20)  # 320 turns
    after = app_memory_mib()["total_mib"]
    assert sum(o["type"] == "done" for o in outcomes) >= 300
    assert after < before * 1.10 + 50, f"memory grew from {before} to {after} MiB"


@pytest.fixture(scope="module")
def busy_app(serve_instance: int, tiny_causal_long: Path, tiny_causal: Path, tiny_seq2seq: Path):
    """One chat request at a time and one waiting: the third is refused at once."""
    from serving.app import build_api

    extra = {
        "chat": {
            # Long enough that the running reply still runs when the next requests come.
            "model": {"source": str(write_gguf(tiny_causal_long)), "context_tokens": 4608},
            "generation": {"max_new_tokens": 4000, "min_new_tokens": 4000},
            "batching": {"max_batch_size": 1},
            "deployment": {"max_ongoing_requests": 1, "max_queued_requests": 1},
        },
    }
    config = tiny_config(tiny_causal, tiny_seq2seq, serve_instance, extra=extra)
    serve.run(build_api(config), name="busy-api", route_prefix="/busy/api")
    base = f"http://127.0.0.1:{serve_instance}/busy"
    wait_healthy(base, timeout=120)
    yield base
    serve.delete("busy-api")


def test_a_full_queue_answers_busy_at_once_and_everything_else_is_answered(busy_app: str):
    url = busy_app.replace("http://", "ws://") + "/api/chat"

    async def timed(user: int, streaming: asyncio.Event | None = None) -> tuple[dict, float]:
        started = time.monotonic()
        (outcome,) = await _conversation(url, user, 1, streaming)
        return outcome, time.monotonic() - started

    async def everyone():
        # One reply runs in the only slot before five more arrive together, so the test does
        # not depend on which of six simultaneous requests the router's handle places first.
        streaming = asyncio.Event()
        running = asyncio.create_task(timed(0, streaming))
        await asyncio.wait_for(streaming.wait(), timeout=60)
        later = await asyncio.gather(*(timed(user) for user in range(1, 6)))
        return [await running, *later]

    results = asyncio.run(everyone())
    assert results[0][0]["type"] == "done", results[0]
    later = results[1:]
    busy = [(o, t) for o, t in later if o["type"] == "error"]
    done = [o for o, _ in later if o["type"] == "done"]
    assert all(o["code"] == "busy" and t < 5 for o, t in busy), busy
    # One waits in the queue and is answered when the running one ends; the rest are refused.
    assert len(done) == 1 and len(busy) == 4, (done, busy)

    async def saturate_then_post() -> httpx.Response:
        async with websockets.connect(url) as first, websockets.connect(url) as second:
            story = json.dumps({"message": "Tell me a story", "history": []})
            await first.send(story)
            assert json.loads(await first.recv())["type"] == "start"  # the one running
            await second.send(story)  # the one waiting
            await asyncio.sleep(1)
            async with httpx.AsyncClient(timeout=30) as client:
                return await client.post(f"{busy_app}/api/chat", json={"message": "Hi"})

    response = asyncio.run(saturate_then_post())
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "busy"
