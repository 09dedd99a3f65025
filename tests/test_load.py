"""Load on real processes: many conversations at once, a full queue, and a soak for memory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets

from serving.events import DeltaEvent, DoneEvent, ErrorEvent, Event
from serving.testing.probes import app_memory_mib
from serving.testing.tiny_gguf import write_gguf
from serving.testing.tiny_models import CORPUS
from tests.conftest import LONG_REPLY_TOKENS
from tests.support import api_ws_url, metric, metrics_text, read_turn, ws_turn

ENGLISH_WORDS = sorted({word.strip(",.?!") for line in CORPUS[::2] for word in line.split()})


def _message(user: int, turn: int) -> str:
    """English words of the tiny models' corpus, different for each user and turn: a random tiny
    model answers near-identical prompts alike, and these get replies of their own."""
    words = ENGLISH_WORDS
    first, second = words[user % len(words)], words[(7 * user + 3 * turn + 1) % len(words)]
    return f"{first} {second}: user {user}, turn {turn}."


async def _conversation(url: str, user: int, turns: int) -> list[Event]:
    """One user's conversation; each turn's message is its own (``_message``)."""
    outcomes, history = [], []
    async with websockets.connect(url, open_timeout=60) as socket:
        for turn in range(turns):
            message = _message(user, turn)
            event = (await ws_turn(socket, message, history))[-1]
            outcomes.append(event)
            if isinstance(event, DoneEvent):
                history += [
                    {"role": "user", "content": event.message_en},
                    {"role": "assistant", "content": event.reply_en},
                ]
    return outcomes


def _run(url: str, users: int, turns: int) -> list[Event]:
    async def everyone():
        return await asyncio.gather(*(_conversation(url, user, turns) for user in range(users)))

    return [outcome for outcomes in asyncio.run(everyone()) for outcome in outcomes]


@pytest.fixture(scope="module")
def greedy_app(tiny_graph):
    """The tiny graph with greedy decoding: a prompt gets the same reply however it is batched.

    No system prompt, no opening exchange, and 48 tokens: each turn of ``_message`` then gets
    a reply of its own (with the offline profile's opening, 2 of 32 conversations got the
    same three replies)."""
    greedy = {"do_sample": False, "max_new_tokens": 48, "min_new_tokens": 48}
    extra = {"chat": {"system_prompt": None, "opening": [], "generation": greedy}}
    with tiny_graph("/greedy", extra, parts=["api"]) as base:
        yield base


def test_32_conversations_at_once_are_all_answered_and_never_mixed_up(greedy_app: str):
    url = api_ws_url(greedy_app)
    users, turns = 32, 3

    def replies(outcomes: list[Event]) -> list[str | None]:
        return [o.reply if isinstance(o, DoneEvent) else None for o in outcomes]

    async def alone() -> list[list[str | None]]:
        return [replies(await _conversation(url, user, turns)) for user in range(users)]

    async def together() -> list[list[Event]]:
        return await asyncio.gather(*(_conversation(url, user, turns) for user in range(users)))

    expected = asyncio.run(alone())
    again = replies(asyncio.run(_conversation(url, 0, turns)))
    assert again == expected[0], "greedy replies changed from one run to the next"
    # Every conversation's replies are its own: one that reached another conversation shows.
    assert len({tuple(found) for found in expected}) == users, expected
    outcomes = asyncio.run(together())
    # Nothing is refused: this graph queues without bound (max_queued_requests: -1).
    refused = [o for found in outcomes for o in found if not isinstance(o, DoneEvent)]
    assert not refused, refused[:3]
    mixed = [
        (user, turn)
        for user, found in enumerate(outcomes)
        for turn, reply in enumerate(replies(found))
        if reply != expected[user][turn]
    ]
    assert not mixed, f"{len(mixed)} (user, turn) got another reply than alone: {mixed[:8]}"


def test_memory_stays_flat_over_a_soak_of_hundreds_of_turns(tiny_app: str):
    url = api_ws_url(tiny_app)
    _run(url, users=16, turns=4)  # warm up: caches, pools, first batches
    before = app_memory_mib()["total_mib"]
    outcomes = _run(url, users=16, turns=20)  # 320 turns
    after = app_memory_mib()["total_mib"]
    assert sum(isinstance(o, DoneEvent) for o in outcomes) >= 300
    assert after < before * 1.10 + 50, f"memory grew from {before} to {after} MiB"


@pytest.fixture(scope="module")
def busy_app(tiny_graph, tiny_causal_long: Path):
    """One chat request at a time and one waiting: the third is refused at once."""
    extra = {
        "chat": {
            # The running reply outlasts the test's checks: the test ends it by leaving.
            "model": {"source": str(write_gguf(tiny_causal_long)), "context_tokens": 24_576},
            "generation": {
                "max_new_tokens": LONG_REPLY_TOKENS,
                "min_new_tokens": LONG_REPLY_TOKENS,
            },
            "batching": {"max_batch_size": 1},
            "deployment": {"max_ongoing_requests": 1, "max_queued_requests": 1},
        },
        "router": {"model_silence_s": 600},  # the queued turn may wait as long as the test needs
    }
    with tiny_graph("/busy", extra, parts=["api"]) as base:
        yield base


def _queued(application: str, deployment: str) -> float:
    """Serve's gauge of requests that wait in handles for a replica of ``deployment``."""
    queued = "ray_serve_deployment_queued_queries"
    return metric(metrics_text(), queued, application=application, deployment=deployment)


async def _streams(socket, started: asyncio.Event) -> Event:
    """Read a turn to its end; ``started`` is set at its first delta."""

    def mark(event: Event) -> None:
        if isinstance(event, DeltaEvent):
            started.set()

    return (await read_turn(socket, mark))[-1]


def test_a_full_queue_answers_busy_at_once_and_everything_else_is_answered(busy_app: str):
    url = api_ws_url(busy_app)
    story = json.dumps({"message": "Tell me a story", "history": []})

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(timeout=None) as client:  # the running reply is the bound
            return await client.post(f"{busy_app}/api/chat", json={"message": "Hi"})

    async def scenario() -> tuple[list, httpx.Response]:
        async with websockets.connect(url) as running, websockets.connect(url) as waiting:
            runs, waits = asyncio.Event(), asyncio.Event()
            await running.send(story)
            ran = asyncio.create_task(_streams(running, runs))
            await asyncio.wait_for(runs.wait(), 60)  # the only slot is taken
            await waiting.send(story)
            waited = asyncio.create_task(_streams(waiting, waits))
            # The running reply is the bound: once it ends, nothing waits any more.
            while not await asyncio.to_thread(_queued, "busy-api", "ChatModel"):
                assert not ran.done(), f"the reply ended before the next one queued: {ran.result()}"
                await asyncio.sleep(0.5)
            later = asyncio.gather(*(_conversation(url, user, 1) for user in range(2, 6)), post())
            await asyncio.wait({later, ran}, return_when=asyncio.FIRST_COMPLETED)
            # Refused at once: answered while the reply in the slot still runs, not after it.
            assert later.done() and not ran.done(), "the later requests waited for the slot"
            assert not waits.is_set()  # the queued turn waits for the slot...
            ran.cancel()
            await running.close()  # ...which frees when the running turn's client leaves
            # Serve hands the freed slot to the waiting request at once; 60 s only guards a hang.
            started = asyncio.create_task(waits.wait())
            await asyncio.wait({started, waited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert waits.is_set(), waited.result() if waited.done() else "it still waits"
            started.cancel()
            waited.cancel()
            *refused, response = later.result()
            return [outcome for (outcome,) in refused], response

    refused, response = asyncio.run(scenario())
    assert all(isinstance(o, ErrorEvent) and o.code == "busy" for o in refused), refused
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "busy"
