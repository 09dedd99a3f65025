"""The whole graph through Serve, on tiny models: handles, the WebSocket API and HTTP."""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from ray import serve

from tests.conftest import LONG_REPLY_TOKENS
from tests.ws import ws_turn


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/api/chat"


def test_chat_deployment_streams_through_a_handle(tiny_app: str):
    chat = serve.get_deployment_handle("ChatModel", app_name="api").options(stream=True)

    async def pieces() -> list:
        return [piece async for piece in chat.stream.remote([], "Hello, how are you today?")]

    info, *out, end = asyncio.run(pieces())
    assert info.history_dropped == 0 and info.prompt_tokens > 0
    assert len(out) > 1 and "".join(out).strip()
    assert end.completion_tokens >= len(out)


def test_detector_deployment_through_a_handle(tiny_app: str):
    detector = serve.get_deployment_handle("LanguageDetector", app_name="api")
    assert detector.detect.remote("Bonjour tout le monde, comment allez-vous ?").result() == "fr"
    assert detector.detect.remote("Hello everybody, how are you?").result() == "en"


def test_websocket_carries_several_turns_including_french_with_history(tiny_app: str):
    async def conversation():
        async with websockets.connect(ws_url(tiny_app)) as socket:
            first = await ws_turn(socket, "Hello, how are you today?", [])
            done = first[-1]
            history = [
                {"role": "user", "content": done["message_en"]},
                {"role": "assistant", "content": done["reply_en"]},
            ]
            second = await ws_turn(socket, "Bonjour, comment allez-vous aujourd'hui ?", history)
            third = await ws_turn(socket, "And what about tomorrow?", [])
            return first, second, third

    first, second, third = asyncio.run(conversation())
    for events in (first, second, third):
        types = [event["type"] for event in events]
        assert types[0] == "start" and types[-1] == "done", types
        assert set(types[1:-1]) == {"delta"}
        assert "".join(e["text"] for e in events[1:-1]).strip() == events[-1]["reply"]
    assert first[0] == {
        "type": "start",
        "language": "en",
        "message_en": "Hello, how are you today?",
        "history_dropped": 0,
    }
    assert first[-1]["reply"] == first[-1]["reply_en"]
    french_start, french_done = second[0], second[-1]
    assert french_start["language"] == "fr"
    assert french_start["message_en"] != "Bonjour, comment allez-vous aujourd'hui ?"  # translated
    assert french_done["message_en"] == french_start["message_en"]
    assert french_done["language"] == "fr" and french_done["reply_en"] and french_done["reply"]
    assert third[0]["language"] == "en"
    # Each French sentence's first delta names its English source, in the reply's order.
    sources = [e["text_en"].strip() for e in second[1:-1] if "text_en" in e]
    assert sources and "text_en" in second[1]
    position = 0
    for source in sources:
        position = french_done["reply_en"].index(source, position) + len(source)


def test_websocket_bad_frames_get_error_events_and_the_socket_stays_usable(tiny_app: str):
    async def scenario():
        async with websockets.connect(ws_url(tiny_app)) as socket:
            replies = []
            for frame in [
                b"\x00binary",
                "{not json",
                json.dumps({"message": ""}),
                json.dumps({"message": "hi", "history": "x"}),
            ]:
                await socket.send(frame)
                replies.append(json.loads(await socket.recv()))
            good = await ws_turn(socket, "Hello there", [])
            return replies, good

    replies, good = asyncio.run(scenario())
    assert [r["type"] for r in replies] == ["error"] * 4
    assert all(r["code"] == "invalid_request" and r["message"] for r in replies)
    assert "binary" in replies[0]["message"]
    assert "Traceback" not in json.dumps(replies)
    assert good[-1]["type"] == "done"


def test_http_chat_returns_the_done_event(tiny_app: str):
    response = httpx.post(
        f"{tiny_app}/api/chat", json={"message": "Hello", "history": []}, timeout=60
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "reply",
        "reply_en",
        "message_en",
        "language",
        "history_dropped",
        "usage",
        "finish_reason",
    }
    assert body["language"] == "en" and body["reply"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("oops", "JSON object"),
        ('{"message": "  "}', "empty"),
        ('{"history": []}', "'message' is missing"),
    ],
)
def test_http_bad_requests_are_422_with_a_reason(tiny_app: str, body: str, fragment: str):
    response = httpx.post(f"{tiny_app}/api/chat", content=body, timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and fragment in error["message"]


def test_healthz_lists_every_deployment(tiny_app: str):
    response = httpx.get(f"{tiny_app}/api/healthz", timeout=30)
    assert response.status_code == 200
    deployments = response.json()["deployments"]
    for name in ["ChatModel", "TranslatorFrEn", "TranslatorEnFr", "LanguageDetector", "Router"]:
        assert deployments[f"api/{name}"] == "HEALTHY"
    assert deployments["ui/ChatUI"] == "HEALTHY"


def test_a_model_side_refusal_reaches_the_client_as_its_own_error(tiny_app: str):
    """InvalidRequestError raised in the ChatModel replica crosses Ray and the stream intact."""
    too_long = "Let us go for a walk in the park and talk. " * 80  # > the tiny model's context

    async def scenario():
        async with websockets.connect(ws_url(tiny_app)) as socket:
            refused = await ws_turn(socket, too_long, [])
            after = await ws_turn(socket, "Hello again", [])
            return refused, after

    refused, after = asyncio.run(scenario())
    error = refused[-1]
    assert error["type"] == "error" and error["code"] == "invalid_request", error
    assert "too long for the chat model" in error["message"]
    assert after[-1]["type"] == "done"


def _settled_activity(handle, timeout: float = 10) -> dict[str, int]:
    """The replica's generation counters once nothing runs and the step count holds still."""
    deadline = time.monotonic() + timeout
    last = handle.activity.remote().result()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = handle.activity.remote().result()
        if now["active"] == 0 and now == last:
            return now
        last = now
    raise AssertionError(f"the replica kept generating: {last}")


def test_closing_the_socket_mid_reply_stops_the_chat_model_and_the_translator(long_app: str):
    """The client leaves during a French reply; generate stops upstream within a few tokens."""
    chat = serve.get_deployment_handle("ChatModel", app_name="long-api")
    en_fr = serve.get_deployment_handle("TranslatorEnFr", app_name="long-api")
    before = _settled_activity(chat)

    async def leave_after_three_deltas() -> int:
        url = long_app.replace("http://", "ws://") + "/api/chat"
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"message": "Bonjour, comment allez-vous ?"}))
            deltas = 0
            while deltas < 3:
                deltas += json.loads(await socket.recv())["type"] == "delta"
        return (await chat.activity.remote())["steps"]

    at_close = asyncio.run(leave_after_three_deltas())
    after = _settled_activity(chat)
    generated = after["steps"] - before["steps"]
    assert generated < LONG_REPLY_TOKENS / 2, f"{generated} of {LONG_REPLY_TOKENS} tokens"
    # Counted from a call made after the close: the replica had already stopped (1 step here).
    assert after["steps"] - at_close <= 30, f"{after['steps'] - at_close} steps after the close"
    assert _settled_activity(en_fr)["active"] == 0


def test_long_history_is_trimmed_and_the_client_is_told(tiny_app: str):
    exchange = [
        {"role": "user", "content": "What would you like to eat tonight? " * 6},
        {"role": "assistant", "content": "Maybe some pasta with vegetables. " * 6},
    ]

    async def scenario():
        async with websockets.connect(ws_url(tiny_app)) as socket:
            return await ws_turn(socket, "And tomorrow?", exchange * 12)

    events = asyncio.run(scenario())
    start, done = events[0], events[-1]
    assert done["type"] == "done", done
    dropped = start["history_dropped"]
    assert 0 < dropped < 24 and dropped % 2 == 0, start
    assert done["history_dropped"] == dropped
