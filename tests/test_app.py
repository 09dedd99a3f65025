"""The whole graph through Serve, on tiny models: handles, the WebSocket API and HTTP."""

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest
import websockets
from ray import serve

from serving.events import DeltaEvent, DoneEvent, ErrorEvent, Event, StartEvent, parse_event
from tests.conftest import LONG_REPLY_TOKENS
from tests.replicas import ask, replica_names
from tests.support import (
    activity,
    api_ws_url,
    graph_at,
    one_turn,
    post_chat,
    read_turn,
    send_turn,
    until_deltas,
    ws_turn,
)


def test_chat_deployment_streams_through_a_handle(long_app: str):
    """A reply long enough to outlast several of the pacing's intervals comes in several
    pieces. (The tiny graph's 24 tokens can all arrive before the first piece goes out, on a
    busy machine, and then go out together.)"""
    chat = serve.get_deployment_handle("ChatModel", app_name="long-api").options(stream=True)
    tokens = 1000

    async def pieces() -> list:
        reply = chat.stream.remote([], "Hello, how are you today?", {"max_new_tokens": tokens})
        return [piece async for piece in reply]

    info, *out, end = asyncio.run(pieces())
    out = [piece for piece in out if isinstance(piece, str)]  # a busy machine adds Working
    assert info.history_dropped == 0 and info.prompt_tokens > 0
    assert len(out) > 1 and "".join(out).strip()
    assert end.completion_tokens == tokens


def test_detector_deployment_through_a_handle(tiny_app: str):
    detector = serve.get_deployment_handle("LanguageDetector", app_name="api")
    assert detector.detect.remote("Bonjour tout le monde, comment allez-vous ?").result() == "fr"
    assert detector.detect.remote("Hello everybody, how are you?").result() == "en"


def test_websocket_carries_several_turns_including_french_with_history(tiny_app: str):
    async def conversation():
        async with websockets.connect(api_ws_url(tiny_app)) as socket:
            first = await ws_turn(socket, "Hello, how are you today?", [])
            done = first[-1]
            history = [
                {"role": "user", "content": done.message_en},
                {"role": "assistant", "content": done.reply_en},
            ]
            second = await ws_turn(socket, "Bonjour, comment allez-vous aujourd'hui ?", history)
            third = await ws_turn(socket, "And what about tomorrow?", [])
            return first, second, third

    first, second, third = asyncio.run(conversation())
    for events in (first, second, third):
        kinds = [type(event) for event in events]
        assert kinds[0] is StartEvent and kinds[-1] is DoneEvent, kinds
        assert set(kinds[1:-1]) == {DeltaEvent}
        assert "".join(e.text for e in events[1:-1]).strip() == events[-1].reply
    assert first[0] == StartEvent(language="en", message_en="Hello, how are you today?")
    assert first[-1].reply == first[-1].reply_en
    french_start, french_done = second[0], second[-1]
    assert french_start.language == "fr"
    assert french_start.message_en != "Bonjour, comment allez-vous aujourd'hui ?"  # translated
    assert french_done.message_en == french_start.message_en
    assert french_done.language == "fr" and french_done.reply_en and french_done.reply
    assert third[0].language == "en"
    # Each French sentence's first delta names its English source, in the reply's order.
    sources = [e.text_en.strip() for e in second[1:-1] if e.text_en is not None]
    assert sources and second[1].text_en is not None
    position = 0
    for source in sources:
        position = french_done.reply_en.index(source, position) + len(source)


def test_a_short_message_goes_on_in_the_conversation_s_language(tiny_app: str):
    """ "Oui, merci" is too short to tell: in a French conversation (the request's
    ``language``) it is French, translated both ways; alone, English with the reason."""
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]

    async def turns() -> tuple[list, list]:
        async with websockets.connect(api_ws_url(tiny_app)) as socket:
            turn = {"message": "Oui, merci", "history": history, "language": "fr"}
            await socket.send(json.dumps(turn))
            french = await read_turn(socket)
            alone = await ws_turn(socket, "Oui, merci", history)
            return french, alone

    french, alone = asyncio.run(turns())
    assert french[0].language == french[-1].language == "fr"
    assert french[0].reason == "continued" and french[-1].message_en != "Oui, merci"
    assert alone[0].language == alone[-1].language == "en" and alone[0].reason == "unsure"
    assert alone[-1].message_en == "Oui, merci"
    answer = post_chat(tiny_app, "Oui, merci", history=history, language="fr")
    assert answer.status_code == 200 and answer.json()["language"] == "fr"
    wrong = post_chat(tiny_app, "Oui, merci", language=["fr"])
    assert wrong.status_code == 422 and "'language'" in wrong.json()["error"]["message"]


def test_websocket_bad_frames_get_error_events_and_the_socket_stays_usable(tiny_app: str):
    async def scenario():
        async with websockets.connect(api_ws_url(tiny_app)) as socket:
            replies = []
            for frame in [
                b"\x00binary",
                "{not json",
                json.dumps({"message": ""}),
                json.dumps({"message": "hi", "history": "x"}),
            ]:
                await socket.send(frame)
                replies.append(parse_event(await socket.recv()))
            good = await ws_turn(socket, "Hello there", [])
            return replies, good

    replies, good = asyncio.run(scenario())
    assert all(isinstance(r, ErrorEvent) for r in replies), replies
    assert all(r.code == "invalid_request" and r.message for r in replies)
    assert "binary" in replies[0].message
    assert not any("Traceback" in r.message for r in replies)
    assert isinstance(good[-1], DoneEvent)


def test_http_chat_returns_the_done_event(tiny_app: str):
    response = post_chat(tiny_app, "Hello", history=[])
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
    for name in [
        "ChatModel",
        "Translator",
        "LanguageDetector",
        "Router",
    ]:
        assert deployments[f"api/{name}"] == "HEALTHY"
    assert deployments["ui/ChatUI"] == "HEALTHY"


def test_a_model_side_refusal_reaches_the_client_as_its_own_error(tiny_app: str):
    """InvalidRequestError raised in the ChatModel replica crosses Ray and the stream intact."""
    too_long = "Let us go for a walk in the park and talk. " * 80  # > the tiny model's context

    async def scenario():
        async with websockets.connect(api_ws_url(tiny_app)) as socket:
            refused = await ws_turn(socket, too_long, [])
            after = await ws_turn(socket, "Hello again", [])
            return refused, after

    refused, after = asyncio.run(scenario())
    error = refused[-1]
    assert isinstance(error, ErrorEvent) and error.code == "invalid_request", error
    assert "too long for the chat model" in error.message
    assert isinstance(after[-1], DoneEvent)


def _settled_activity(deployment: str, timeout: float = 10) -> dict[str, int]:
    """The replica's generation counters once nothing runs and the step count holds still."""
    deadline = time.monotonic() + timeout
    last = activity(deployment, "long-api")
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = activity(deployment, "long-api")
        if now["active"] == 0 and now == last:
            return now
        last = now
    raise AssertionError(f"the replica kept generating: {last}")


def test_closing_the_socket_mid_reply_stops_the_chat_model_and_the_translator(long_app: str):
    """The client leaves during a French reply; generate stops upstream within a few tokens."""
    chat = serve.get_deployment_handle("ChatModel", app_name="long-api")
    before = _settled_activity("ChatModel")

    async def leave_after_three_deltas() -> int:
        async with websockets.connect(api_ws_url(long_app)) as socket:
            await send_turn(socket, "Bonjour, comment allez-vous ?")
            await until_deltas(socket, 3)
            return (await chat.activity.remote())["steps"]  # read while the client is still here

    at_close = asyncio.run(leave_after_three_deltas())
    after = _settled_activity("ChatModel")
    before_close, after_close = at_close - before["steps"], after["steps"] - at_close
    generated = before_close + after_close
    assert generated < LONG_REPLY_TOKENS / 2, f"{generated} of {LONG_REPLY_TOKENS} tokens"
    # The stop crosses router and replica once, as each delta read before the close did: it may
    # not take more steps than those three deltas took.
    assert after_close <= before_close, (
        f"{after_close} steps after the close, {before_close} before"
    )
    assert _settled_activity("Translator")["active"] == 0


def test_long_history_is_trimmed_and_the_client_is_told(tiny_app: str):
    exchange = [
        {"role": "user", "content": "What would you like to eat tonight? " * 6},
        {"role": "assistant", "content": "Maybe some pasta with vegetables. " * 6},
    ]

    events = asyncio.run(one_turn(api_ws_url(tiny_app), "And tomorrow?", exchange * 12))
    start, done = events[0], events[-1]
    assert isinstance(done, DoneEvent), done
    dropped = start.history_dropped
    assert 0 < dropped < 24 and dropped % 2 == 0, start
    assert done.history_dropped == dropped


def test_the_api_upgrades_in_place_while_a_conversation_goes_on_in_the_page(
    serve_instance: int, tiny_causal_long, tiny_causal, tiny_seq2seq
):
    """Two applications: the API gets a new config while a reply streams through the page; that
    reply ends normally, and the page's replica and session live on."""
    import threading

    from gradio_client import Client

    from serving.testing.graphs import deploy_graph
    from serving.testing.tiny_gguf import write_gguf
    from serving.testing.tiny_models import tiny_config

    # 1000 tokens stream while Serve stops the old replicas, and end within the 20 s that Serve
    # lets a stopping replica finish its requests (graceful_shutdown_timeout_s).
    chat = {
        "model": {"source": str(write_gguf(tiny_causal_long)), "context_tokens": 2048},
        "generation": {"max_new_tokens": 1000, "min_new_tokens": 1000},
    }

    def config(model_name: str):
        extra = {"router": {"model_name": model_name}, "chat": chat}
        return tiny_config(tiny_causal, tiny_seq2seq, serve_instance, extra=extra)

    def page_replicas() -> set[str]:
        return replica_names("upgrade-ui", "ChatUI")

    def served_model(base: str) -> str:
        return httpx.get(f"{base}/api/v1/models", timeout=10).json()["data"][0]["id"]

    with graph_at(config("v1"), "/upgrade") as base:
        page_before = page_replicas()
        client = Client(base + "/", verbose=False)
        _, turns, _, _ = client.predict("Hello there", [], api_name="/chat")
        assert served_model(base) == "v1" and len(turns) == 1

        in_flight = client.submit("How are you today?", turns, api_name="/chat")
        updates: list[float] = []  # when each of the page's updates of this turn came
        watcher = threading.Thread(
            target=lambda: updates.extend(time.monotonic() for _ in in_flight)
        )
        watcher.start()
        deadline = time.monotonic() + 60
        while not activity("ChatModel", "upgrade-api")["active"]:  # the reply is being written
            assert not in_flight.done() and time.monotonic() < deadline, "the reply did not start"
            time.sleep(0.1)
        began = time.monotonic()
        deploy_graph(config("v2"), "/upgrade", ["api"], timeout=120)
        _, turns, _, _ = in_flight.result(timeout=120)  # the turn begun before the upgrade
        watcher.join(30)
        assert len(turns) == 2 and turns[-1]["assistant"].strip()
        assert any(at > began for at in updates), "the turn had ended before the upgrade began"
        _, turns, _, _ = client.predict("And tomorrow?", turns, api_name="/chat")
        assert len(turns) == 3 and turns[-1]["assistant"].strip()
        assert served_model(base) == "v2"  # the new config is live...
        assert page_replicas() == page_before  # ...and the page was not restarted


def test_a_replica_whose_model_goes_bad_is_replaced(serve_instance: int, tiny_causal):
    """check_health fails on NaN weights; Serve replaces the replica, which answers again."""
    import torch

    from serving.chat import ChatModel
    from serving.config import ChatSettings
    from serving.model_config import GenerationSettings, ModelSpec

    class BreakableChatModel(ChatModel):  # defined here: pickled by value to the replica
        def break_weights(self) -> None:
            with torch.no_grad():
                for parameter in self.engine.lm.model.parameters():
                    parameter.fill_(float("nan"))

    settings = ChatSettings(
        model=ModelSpec(source=str(tiny_causal), threads=1),
        generation=GenerationSettings(max_new_tokens=8),
    )
    deployment = serve.deployment(
        BreakableChatModel,
        name="ChatModel",
        health_check_period_s=1,
        health_check_timeout_s=10,
        ray_actor_options={"num_cpus": 0.1},
    )
    handle = serve.run(deployment.bind(settings), name="health", route_prefix=None)

    def replicas() -> set[str]:
        return replica_names("health", "ChatModel")

    try:
        first = replicas()
        assert len(first) == 1
        handle.break_weights.remote().result()
        deadline = time.monotonic() + 90
        while (first & replicas() or not replicas()) and time.monotonic() < deadline:
            time.sleep(1)
        assert replicas() and not (replicas() & first), "the broken replica was not replaced"
        stream = handle.options(stream=True).stream.remote([], "Hello")
        pieces = [item for item in stream if isinstance(item, str)]
        assert "".join(pieces).strip()  # the new replica answers
    finally:
        serve.delete("health")


def test_a_deployment_gets_its_own_runtime_env_from_config(tiny_app: str):
    """ray_actor_options.runtime_env reaches that deployment's replicas and no other."""
    from serving.config import DetectorSettings
    from serving.detect import LanguageDetector
    from serving.model_config import DeploymentSettings

    settings = DeploymentSettings.model_validate(
        {
            "ray_actor_options": {
                "num_cpus": 0.1,
                "runtime_env": {"env_vars": {"POLYGLOT_RUNTIME_ENV": "detector-only"}},
            }
        }
    )
    options = settings.serve_options(False, "LanguageDetector")
    deployment = serve.deployment(LanguageDetector, name="LanguageDetector").options(**options)
    handle = serve.run(deployment.bind(DetectorSettings()), name="renv", route_prefix=None)

    def environment(app: str) -> str | None:
        (name,) = replica_names(app, "LanguageDetector")
        return ask(name, lambda: __import__("os").environ.get("POLYGLOT_RUNTIME_ENV"))

    try:
        assert handle.detect.remote("Bonjour tout le monde !").result() == "fr"
        assert environment("renv") == "detector-only"
        assert environment("api") is None  # the other app's detector has its own environment
    finally:
        serve.delete("renv")


def test_concurrent_replies_share_decoding_steps_in_the_replica(long_app: str):
    """Continuous batching in the ChatModel replica: once six replies all stream, each decoding
    step gives every one of them its next token, and each still streams its own text."""
    chat = serve.get_deployment_handle("ChatModel", app_name="long-api").options(stream=True)
    plain = serve.get_deployment_handle("ChatModel", app_name="long-api")
    prompts = [
        f"Tell me something about {topic}."
        for topic in ["cats", "rain", "maps", "tea", "snow", "bees"]
    ]
    tokens = 300
    streaming = [asyncio.Event() for _ in prompts]

    async def reply(prompt: str, started: asyncio.Event) -> list:
        items = []
        async for item in chat.stream.remote([], prompt, {"max_new_tokens": tokens}):
            items.append(item)
            if isinstance(item, str) and item:
                started.set()
        return items

    async def together() -> tuple[int, list]:
        replies = [
            asyncio.create_task(reply(*pair)) for pair in zip(prompts, streaming, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in streaming)), 120)
        now = await plain.activity.remote()  # every reply has begun: is every one still going?
        assert now["active"] == 6, f"the six replies did not decode at the same time: {now}"
        return now["steps"], await asyncio.gather(*replies)

    at_all, replies = asyncio.run(together())
    steps = plain.activity.remote().result()["steps"] - at_all
    assert [items[-1].completion_tokens for items in replies] == [tokens] * 6
    texts = [[item for item in items if isinstance(item, str)] for items in replies]
    assert all("".join(text).strip() for text in texts)
    # Each step gives every running reply a token, and none had 300 left: one at a time, ~6 x 300.
    assert steps <= tokens, f"{steps} decoding steps after all six began: not batched"


def test_a_browser_socket_from_another_site_is_refused(tiny_app: str):
    """Cross-site WebSocket hijacking: a page on another origin may not use the API."""
    from websockets.exceptions import InvalidStatus

    async def turn(origin: str | None) -> Event:
        return (await one_turn(api_ws_url(tiny_app), "Hello", origin=origin))[-1]

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(turn("https://evil.example"))
    assert refused.value.response.status_code == 403
    assert isinstance(asyncio.run(turn(tiny_app)), DoneEvent)  # the service's own origin
    assert isinstance(asyncio.run(turn(None)), DoneEvent)  # a program, not a browser


@pytest.mark.parametrize(
    "message",
    [
        "Can you explain this emoji? 👩‍💻🎉",
        "What does שלום mean? And مرحبا?",
        "Is <b>bold</b> **markdown** or `code`? <script>alert(1)</script>",
        "Tab\there, bell\x07 and escape\x1b[31m inside",
    ],
)
def test_odd_but_legitimate_text_gets_a_normal_reply(tiny_app: str, message: str):
    done = asyncio.run(one_turn(api_ws_url(tiny_app), message))[-1]
    assert isinstance(done, DoneEvent) and done.reply, done
    assert "\x07" not in done.message_en and "\x1b" not in done.message_en


def test_deploying_the_graph_imports_neither_gradio_nor_torch():
    """`run.py` and `serve run` import the builder before Ray starts: each heavy library there
    is seconds of a cold start spent before the first replica is asked for (docs/benchmark.md)."""
    script = (
        "import sys, serving.app; "
        "print(' '.join(sorted({'gradio', 'torch', 'transformers'} & set(sys.modules))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == ""
