"""The tests' toolkit: a graph at a URL prefix, WebSocket turns, replicas' counters, metrics.

Fixtures that bind these to the session's Serve and tiny models are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import httpx
import pytest

from serving.config import AppConfig, RouterSettings
from serving.events import FINAL, DeltaEvent, ErrorEvent, Event, StoredTurn, parse_event
from serving.testing.graphs import PARTS, delete_graph, deploy_graph
from serving.testing.graphs import api_ws_url as api_ws_url  # the tests' one way to that URL
from serving.testing.probes import free_port

T = TypeVar("T")

METRICS_PORT = free_port()  # Ray's Prometheus endpoint for the test cluster

# A stored turn of the page: a French message and its reply, with their English.
FRENCH_TURN: StoredTurn = {
    "user": "Salut",
    "assistant": "Bonjour !",
    "user_en": "Hi",
    "assistant_en": "Hello!",
    "language": "fr",
}


# --- a graph at a URL prefix ---


@contextmanager
def graph_at(config: AppConfig, prefix: str = "", parts: Collection[str] = PARTS) -> Iterator[str]:
    """``parts`` of the graph of ``config`` at ``prefix`` ("" or "/name") on the session's Serve,
    healthy; yields its base URL and removes it after. Its page talks to the API beside it."""
    base_url = deploy_graph(config, prefix, parts, timeout=120)
    try:
        yield base_url
    finally:
        delete_graph(prefix, parts)


# --- WebSocket turns ---


async def send_turn(socket, message: str, history: Sequence[dict] = ()) -> None:
    await socket.send(json.dumps({"message": message, "history": list(history)}))


async def turn_events(socket) -> AsyncIterator[Event]:
    """The events of the turn in progress, up to its ``done`` or ``error`` (included)."""
    async for raw in socket:
        event = parse_event(raw)
        yield event
        if isinstance(event, FINAL):
            return
    raise AssertionError("the socket closed in the middle of a turn")


async def read_turn(socket, each: Callable[[Event], object] | None = None) -> list[Event]:
    """The turn's events to its end; ``each(event)`` is called as each one comes."""
    events = []
    async for event in turn_events(socket):
        if each:
            each(event)
        events.append(event)
    return events


async def ws_turn(socket, message: str, history: Sequence[dict] = ()) -> list[Event]:
    """Send one turn and return its events, ``start`` to ``done`` (or ``error``)."""
    await send_turn(socket, message, history)
    return await read_turn(socket)


async def one_turn(url: str, message: str, history: Sequence[dict] = (), **connect) -> list[Event]:
    """One turn on a connection of its own to the WebSocket API at ``url``."""
    import websockets

    async with websockets.connect(url, **connect) as socket:
        return await ws_turn(socket, message, history)


# The router ends a turn whose model says nothing for model_silence_s: a client never waits longer.
QUIET_S = RouterSettings().model_silence_s + 5


async def until_deltas(socket, count: int) -> list[DeltaEvent]:
    """The turn's next ``count`` deltas; fails on an error event or ``QUIET_S`` of silence."""
    deltas: list[DeltaEvent] = []
    while len(deltas) < count:
        try:
            event = parse_event(await asyncio.wait_for(socket.recv(), QUIET_S))
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no event for {QUIET_S:.0f} s after {len(deltas)} of {count} deltas"
            ) from None
        assert not isinstance(event, ErrorEvent), event
        if isinstance(event, DeltaEvent):
            deltas.append(event)
    return deltas


def post_chat(base_url: str, message: str, token: str | None = None, **fields) -> httpx.Response:
    """One turn through the HTTP API, with ``token`` as a bearer if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"message": message, **fields}
    return httpx.post(f"{base_url}/api/chat", json=body, headers=headers, timeout=60)


# --- llama.cpp's slots ---


def slot_tasks(engine) -> list[int]:
    """The number of each llama.cpp slot's last request, from the server's own ``/slots``
    route (-1: none yet). Numbers only grow."""
    return [slot.get("id_task", -1) for slot in engine._call("GET", "/slots")]


def in_separate_slots(engine, send_at_once: Callable[[], T], requests: int) -> T:
    """What ``send_at_once()`` returns, once its ``requests`` requests took as many slots.

    Requests sent together share the slots only while they overlap. On a busy machine one may
    start after another has left its slot, and take that slot again: then they go again, five
    times at most."""
    for _ in range(5):
        before = max(slot_tasks(engine))
        result = send_at_once()
        if sum(task > before for task in slot_tasks(engine)) == requests:
            return result
    pytest.fail(
        f"{requests} requests sent at once never took {requests} slots: {slot_tasks(engine)}"
    )


# --- what the replicas and Ray's metrics say ---


def activity(deployment: str, app_name: str = "api", of: tuple[str, ...] = ()) -> dict[str, int]:
    """The generation counters of ``deployment``'s replica (``active``, ``steps``); ``of``
    narrows the translator's to one pair of languages (``("fr", "en")``)."""
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app_name=app_name)
    with ThreadPoolExecutor(1) as pool:  # .result() may not run on an event loop's thread
        return pool.submit(lambda: handle.activity.remote(*of).result()).result()


def metrics_text() -> str:
    return httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for found, value in re.findall(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", text, re.M):
        if all(f'{key}="{wanted}"' in found for key, wanted in labels.items()):
            total += float(value)
    return total
