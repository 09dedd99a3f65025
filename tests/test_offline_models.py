"""End to end on the real offline models (SmolLM2 chat, Gemma 3 translation), judged by lingua."""

import asyncio
import os
from pathlib import Path

import pytest

from serving.config import DetectorSettings, load_config
from serving.detect import LanguageDetector
from serving.events import DeltaEvent, DoneEvent
from tests.pages import EVENT_MS, bots, open_page, send, settled_text, wait_for_list
from tests.support import api_ws_url, graph_at, one_turn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def offline_config(serve_instance: int):
    return load_config("offline", overrides={"http": {"port": serve_instance}})


@pytest.fixture(scope="module")
def offline_api(offline_config) -> str:
    """The offline profile's API, beside the tiny graph, at /offline/api: its WebSocket URL."""
    with graph_at(offline_config, "/offline", ["api"]) as base:
        yield api_ws_url(base)


@pytest.fixture(scope="module")
def offline_page(offline_api: str, offline_config) -> str:
    """Its page at /offline."""
    with graph_at(offline_config, "/offline", ["ui"]) as base:
        yield base


async def _turn(url: str, message: str) -> list[dict]:
    return await one_turn(url, message, open_timeout=30)


@pytest.fixture(scope="module")
def lingua() -> LanguageDetector:
    return LanguageDetector(DetectorSettings())


def test_english_message_gets_an_english_reply(offline_api: str, lingua: LanguageDetector):
    events = asyncio.run(_turn(offline_api, "My friends are cool but they eat too many carbs."))
    done = events[-1]
    assert isinstance(done, DoneEvent), done
    assert sum(isinstance(event, DeltaEvent) for event in events) > 3  # streamed, not at once
    assert done.language == "en"
    assert len(done.reply.split()) >= 5
    assert lingua.detect(done.reply) == "en"


def test_french_message_gets_a_french_reply_with_english_behind_it(
    offline_api: str, lingua: LanguageDetector
):
    events = asyncio.run(_turn(offline_api, "Peux-tu me donner trois conseils pour mieux dormir ?"))
    start, done = events[0], events[-1]
    assert isinstance(done, DoneEvent), done
    assert start.language == "fr" and done.language == "fr"
    assert lingua.detect(done.message_en) == "en"
    assert lingua.detect(done.reply_en) == "en"
    assert lingua.detect(done.reply) == "fr"
    assert sum(isinstance(event, DeltaEvent) for event in events) > 3


@pytest.mark.browser
def test_the_page_on_the_real_models_in_both_languages(
    browser, offline_page: str, lingua: LanguageDetector, tmp_path: Path
):
    """What a person sees; ``make screenshot`` keeps its pictures in assets/: the page with a
    French turn's English original open (screenshot.png), and the list of conversations
    (conversations.png)."""
    page = open_page(browser, offline_page)
    send(page, "Give me three tips to sleep better.")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length === 1", timeout=120_000
    )
    english = settled_text(page, bots(page).last)
    send(page, "Quels fruits sont de saison en hiver ?")
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=180_000)
    settled_text(page, bots(page).last)
    wait_for_list(page, ["Give me three tips to sleep better."], secret=None)  # the turn is done
    page.locator("#chatbot").get_by_text("English original").click()  # open the fold
    page.locator("#chatbot .thought-group .title[aria-expanded='true']").wait_for(timeout=EVENT_MS)
    # Gradio slides the fold open: "You:" exists at once, inside a box still 0 px high.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chatbot .thought-group .content')]"
        ".some((box) => box.getBoundingClientRect().height > 40)",
        timeout=EVENT_MS,
    )
    page.locator("#chatbot").get_by_text("Assistant:").scroll_into_view_if_needed()
    french = bots(page).last.inner_text().split("English original")[0]
    assert lingua.detect(english) == "en" and lingua.detect(french) == "fr", (english, french)
    pictures = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    page.screenshot(path=str(pictures / "screenshot.png"))
    page.locator("#new-conversation").click()
    page.wait_for_function("() => !document.querySelector('#chatbot .message')", timeout=EVENT_MS)
    send(page, "Peux-tu me conseiller un bon livre ?")
    # The list takes a conversation when its first turn is stored, after a French reply that
    # takes 15-45 s on these models: wait for the reply, then for the list.
    settled_text(page, bots(page).last)
    titles = ["Peux-tu me conseiller un bon livre ?", "Give me three tips to sleep better."]
    wait_for_list(page, titles, secret=None)  # the offline page's key is its own
    page.screenshot(path=str(pictures / "conversations.png"))
    page.close()
