"""Faults on real processes: replicas killed mid-reply, the router killed under open sockets.

A graph of its own at /fault (its chat model writes long replies, so there is time to kill it
mid-way); Serve replaces each killed replica, and the tests wait for that before going on.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import ray
import websockets

from serving.events import DeltaEvent, DoneEvent, ErrorEvent, Event, parse_event
from serving.testing.probes import wait_healthy
from serving.testing.tiny_gguf import write_gguf
from tests.replicas import replica_names
from tests.support import QUIET_S, api_ws_url, read_turn, send_turn, until_deltas

LONG = 4000


@pytest.fixture(scope="module", params=["llama.cpp", "transformers"])
def fault_app(request: pytest.FixtureRequest, tiny_graph, tiny_causal_long: Path):
    """The graph with its causal models (chat, en->fr) on each engine in turn."""
    engine = request.param
    long_model = write_gguf(tiny_causal_long) if engine == "llama.cpp" else tiny_causal_long
    fast_health = {"health_check_period_s": 1, "health_check_timeout_s": 10}
    extra = {
        "chat": {
            "model": {"source": str(long_model), "context_tokens": LONG + 512},
            "generation": {"max_new_tokens": LONG, "min_new_tokens": LONG},
            "deployment": fast_health,
        },
        # Short "sentences": French text comes soon, and the en->fr translator is always busy.
        "router": {"max_sentence_chars": 20},
    }
    with tiny_graph("/fault", extra, engine=engine) as base:
        yield base


def _kill(deployment: str) -> str:
    (name,) = replica_names("fault-api", deployment)
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return name


def _replaced(base: str, deployment: str, old: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = replica_names("fault-api", deployment)
        if names and old not in names:
            wait_healthy(base, timeout=max(1.0, deadline - time.monotonic()))
            return
        time.sleep(0.5)
    raise AssertionError(f"{deployment} was not replaced in {timeout} s")


async def _error_within(socket, seconds: float) -> Event:
    return (await asyncio.wait_for(read_turn(socket), seconds))[-1]


def test_a_chat_replica_killed_mid_reply_is_an_error_and_the_next_turn_works(fault_app: str):
    """The chat model streams the whole reply in one call: killed mid-way, that call fails, and
    the turn ends with a coded error at once (Serve retries no request a replica had taken)."""

    async def scenario() -> tuple[Event, float, list[DeltaEvent]]:
        async with websockets.connect(api_ws_url(fault_app)) as socket:
            await send_turn(socket, "Hello, how are you?")
            await until_deltas(socket, 3)  # the reply is streaming: kill it mid-way
            killed = await asyncio.to_thread(_kill, "ChatModel")
            started = time.monotonic()
            error = await _error_within(socket, 20)
            waited = time.monotonic() - started
            await asyncio.to_thread(_replaced, fault_app, "ChatModel", killed)
            # The same connection serves the next turn once Serve has a new replica.
            await send_turn(socket, "Hi again")
            return error, waited, await until_deltas(socket, 2)

    error, waited, after = asyncio.run(scenario())
    assert isinstance(error, ErrorEvent) and error.code == "generation_failed", error
    assert "Try again" in error.message and waited < 20
    assert "".join(delta.text for delta in after).strip(), after  # the next reply has text


def test_a_translator_replica_killed_mid_reply_ends_the_turn_or_lets_the_new_one_go_on(
    fault_app: str,
):
    """A French reply calls the translator once per sentence (about 80 ms each here), so a kill
    falls either inside a call or between two, and which is a matter of milliseconds:

    - inside one: that call fails, and the turn ends with ``generation_failed`` ("Try again");
    - between two: no call of the turn was on the dead replica. Serve sends the next sentence
      to the replacement once it is up (it retries a request no replica had taken), and the
      reply goes on after that pause.

    Both are right; silence is not. The client hears one of the two within QUIET_S of the kill,
    and the next turn is answered.
    """

    async def scenario() -> tuple[Event, float, list[DeltaEvent]]:
        async with websockets.connect(api_ws_url(fault_app)) as socket:
            await send_turn(socket, "Bonjour, comment allez-vous ?")
            await until_deltas(socket, 3)  # the French reply is streaming: kill it mid-way
            killed = await asyncio.to_thread(_kill, "Translator")
            started = time.monotonic()
            replaced = asyncio.create_task(
                asyncio.to_thread(_replaced, fault_app, "Translator", killed)
            )
            while True:  # deltas sent before the kill still come first
                try:
                    event = parse_event(await asyncio.wait_for(socket.recv(), QUIET_S))
                except asyncio.TimeoutError:
                    raise AssertionError(f"silent for {QUIET_S:.0f} s after the kill") from None
                assert not isinstance(event, DoneEvent), "a 4000-token reply cannot be done yet"
                if isinstance(event, ErrorEvent) or replaced.done():
                    break
            waited = time.monotonic() - started
            await replaced
        # A reply that went on is 4000 tokens long: leaving stops it, and a new client talks.
        async with websockets.connect(api_ws_url(fault_app)) as socket:
            await send_turn(socket, "Salut !")  # French: the new translator answers
            after = await until_deltas(socket, 2)
        return event, waited, after

    event, waited, after = asyncio.run(scenario())
    assert "".join(delta.text for delta in after).strip(), after  # the next reply has text
    if isinstance(event, ErrorEvent):  # the kill fell inside a sentence's translation
        assert event.code == "generation_failed" and "Try again" in event.message, event
        assert waited < 20
    else:  # between two: the replacement translated the next sentence
        assert isinstance(event, DeltaEvent) and event.text, event


def test_the_router_killed_under_open_sockets_closes_them_and_clients_can_reconnect(
    fault_app: str,
):
    async def scenario() -> list:
        sockets = [await websockets.connect(api_ws_url(fault_app)) for _ in range(3)]
        killed = await asyncio.to_thread(_kill, "Router")
        closes = []
        for socket in sockets:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 30)
            closes.append(socket.close_code)
        await asyncio.to_thread(_replaced, fault_app, "Router", killed)
        async with websockets.connect(api_ws_url(fault_app)) as socket:  # a client reconnects
            await send_turn(socket, "Hello again")
            await until_deltas(socket, 2)
        return closes

    closes = asyncio.run(scenario())
    assert len(closes) == 3 and all(code != 1000 for code in closes), closes  # not a normal end


def _reply_text(outputs: list) -> str:
    """The streaming reply's text in the page's latest update (its chat's last message)."""
    chat = outputs[-1][0] if outputs else []
    if not chat or chat[-1]["role"] != "assistant":
        return ""
    content = chat[-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def test_the_page_keeps_the_conversation_when_the_chat_replica_dies(fault_app: str):
    from gradio_client import Client

    client = Client(fault_app + "/", verbose=False)
    turns = [
        {
            "user": "Hello there",
            "assistant": "Hi!",
            "user_en": "Hello there",
            "assistant_en": "Hi!",
            "language": "en",
        }
    ]
    job = client.submit("Tell me a long story", turns, api_name="/chat")
    deadline = time.monotonic() + 60
    while not _reply_text(job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _reply_text(job.outputs()), "the reply had not started when the replica was to die"
    killed = _kill("ChatModel")
    _, kept, box, _ = job.result(timeout=60)
    assert kept == turns  # the stored conversation is intact...
    assert box == "Tell me a long story"  # ...and the message is back in the box to resend
    _replaced(fault_app, "ChatModel", killed)


@pytest.mark.parametrize("deployment", ["ChatModel", "Translator"])
def test_under_load_a_dead_replica_never_leaves_a_turn_silent(
    request: pytest.FixtureRequest, fault_app: str, deployment: str
):
    """8 French conversations at once over the OpenAI API; one model replica is killed while
    all of them stream. Each turn ends with its reply or a coded error, and none goes quiet
    for QUIET_S (the router's model_silence_s, 25 s, + 5); the next turn is answered."""
    import httpx

    # transformers batches statically: a request waits for a running batch to end, so its
    # replies are kept short enough that all 8 stream within the router's 25 s of silence.
    tokens = 1500 if request.node.callspec.params["fault_app"] == "llama.cpp" else 300

    async def conversation(client: httpx.AsyncClient, streaming: asyncio.Event, log: list):
        body = {
            "model": "polyglot-chat",
            "messages": [{"role": "user", "content": "Bonjour, comment allez-vous ?"}],
            "stream": True,
            "max_tokens": tokens,
        }
        async with client.stream("POST", f"{fault_app}/api/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                log.append((time.monotonic(), data))
                if data != "[DONE]" and any(
                    choice.get("delta", {}).get("content")
                    for choice in json.loads(data).get("choices", [])
                ):
                    streaming.set()  # the reply's first text has come
                if data == "[DONE]":
                    return

    async def scenario() -> tuple[float, list[list]]:
        logs: list[list] = [[] for _ in range(8)]
        started = [asyncio.Event() for _ in range(8)]
        async with httpx.AsyncClient(timeout=httpx.Timeout(120)) as client:
            turns = [
                asyncio.create_task(conversation(client, started[i], logs[i])) for i in range(8)
            ]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 120)
            killed_at = time.monotonic()
            killed = await asyncio.to_thread(_kill, deployment)
            # No deadline for the whole: 8 long replies take what this machine takes. What
            # must hold is that no running turn goes quiet for QUIET_S (model_silence_s + 5).
            while not all(turn.done() for turn in turns):
                await asyncio.wait(turns, timeout=1)
                now = time.monotonic()
                for log, turn in zip(logs, turns, strict=True):
                    heard = max([killed_at] + [at for at, _ in log[-1:]])
                    assert turn.done() or now - heard < QUIET_S, f"quiet: {log[-2:]}"
            for turn in turns:
                turn.result()
        await asyncio.to_thread(_replaced, fault_app, deployment, killed)
        return killed_at, logs

    killed_at, logs = asyncio.run(scenario())
    running, errors = 0, 0
    for log in logs:
        assert log[-1][1] == "[DONE]"
        times = [killed_at] + [at for at, _ in log if at >= killed_at]
        if len(times) == 1:
            continue  # it had ended before the kill
        running += 1
        quiet = max(b - a for a, b in zip(times, times[1:], strict=False))
        ends = [(round(at - killed_at, 1), data[:120]) for at, data in log[-3:]]
        assert quiet < QUIET_S, f"a turn went quiet for {quiet:.0f} s; its last events: {ends}"
        last = json.loads(log[-2][1])
        if "error" in last:
            assert last["error"]["code"] == "generation_failed", last
            errors += 1
        else:
            assert last["choices"][0]["finish_reason"] in ("stop", "length"), last
    assert running >= 4, "too few turns were still running when the replica died"
    if deployment == "ChatModel":
        # Turns whose English was all written were only translating: they end normally.
        assert errors >= 1, "the kill cut no turn short"
    answer = httpx.post(  # the next turn, short: this graph's replies are 4000 tokens long
        f"{fault_app}/api/v1/chat/completions",
        json={
            "model": "polyglot-chat",
            "messages": [{"role": "user", "content": "Salut !"}],
            "max_tokens": 12,
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"].strip()
