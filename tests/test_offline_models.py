"""End to end on the real offline models (SmolLM2 chat, Gemma 3 translation), judged by lingua."""

import asyncio

import pytest
import websockets
from ray import serve

from serving.app import build_api
from serving.config import load_config
from serving.detect import LanguageDetector
from tests.ws import ws_turn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def offline_api(serve_instance: int) -> str:
    """The offline profile's API, beside the tiny graph, at /offline-api."""
    config = load_config("offline", overrides={"http": {"port": serve_instance}})
    serve.run(build_api(config), name="offline-api", route_prefix="/offline-api")
    yield f"ws://127.0.0.1:{serve_instance}/offline-api/chat"
    serve.delete("offline-api")


async def _turn(url: str, message: str) -> list[dict]:
    async with websockets.connect(url, open_timeout=30) as socket:
        return await ws_turn(socket, message, [])


@pytest.fixture(scope="module")
def lingua() -> LanguageDetector:
    return LanguageDetector()


def test_english_message_gets_an_english_reply(offline_api: str, lingua: LanguageDetector):
    events = asyncio.run(_turn(offline_api, "My friends are cool but they eat too many carbs."))
    done = events[-1]
    assert done["type"] == "done", done
    assert sum(event["type"] == "delta" for event in events) > 3  # streamed, not sent at once
    assert done["language"] == "en"
    assert len(done["reply"].split()) >= 5
    assert lingua.detect(done["reply"]) == "en"


def test_french_message_gets_a_french_reply_with_english_behind_it(
    offline_api: str, lingua: LanguageDetector
):
    events = asyncio.run(_turn(offline_api, "Peux-tu me donner trois conseils pour mieux dormir ?"))
    start, done = events[0], events[-1]
    assert done["type"] == "done", done
    assert start["language"] == "fr" and done["language"] == "fr"
    assert lingua.detect(done["message_en"]) == "en"
    assert lingua.detect(done["reply_en"]) == "en"
    assert lingua.detect(done["reply"]) == "fr"
    assert sum(event["type"] == "delta" for event in events) > 3
