"""The page in a real browser: Debian's headless Chromium driven by Playwright."""

from pathlib import Path

import pytest

from tests.conftest import LONG_REPLY_TOKENS
from tests.pages import (
    AFTER_RELOAD_MS,
    EVENT_MS,
    RECORD_REPLY_LENGTHS,
    bots,
    button,
    open_page,
    send,
    settled_text,
    wait_for_list,
)
from tests.support import activity

pytestmark = pytest.mark.browser


def test_french_reply_streams_stops_when_asked_and_survives_a_reload(
    browser, long_app: str, tmp_path: Path
):
    """The long graph's chat model would write 20000 tokens: Stop ends it mid-way."""

    steps_before = activity("ChatModel", "long-api")["steps"]
    page = open_page(browser, long_app)
    page.evaluate(RECORD_REPLY_LENGTHS)
    send(page, "Bonjour, comment allez-vous aujourd'hui ?")
    # French text appears while the English reply is still being written (past the 15 characters
    # of the pending bubble)...
    page.wait_for_function(
        "() => window.replyLengths.length && Math.max(...window.replyLengths) > 40",
        timeout=60_000,
    )
    page.locator("#stop").click()
    reply = settled_text(page, bots(page).last)
    lengths = page.evaluate("() => window.replyLengths")
    assert len(set(lengths)) > 2, f"the reply did not grow while streaming: {lengths}"
    assert "(stopped)" in reply and "English original" in reply
    # ...and Stop reached the model: its replica is idle, far from the reply's full length.
    after = activity("ChatModel", "long-api")
    generated = after["steps"] - steps_before
    assert after["active"] == 0 and generated < LONG_REPLY_TOKENS / 2, after

    page.reload(wait_until="load")
    page.locator("#chatbot").get_by_text("Bonjour, comment allez-vous aujourd'hui ?").wait_for(
        timeout=AFTER_RELOAD_MS
    )
    assert settled_text(page, bots(page).last) == reply
    page.locator("#chatbot").get_by_text("English original").click()  # the fold opens
    page.locator("#chatbot").get_by_text("You:").wait_for(timeout=EVENT_MS)
    page.screenshot(path=str(tmp_path / "stopped.png"))  # kept by pytest for a look on failure
    page.close()


def test_retry_undo_edit_and_clear(browser, tiny_app: str, tmp_path: Path):
    page = open_page(browser, tiny_app)
    send(page, "Hello there")
    bots(page).first.wait_for(timeout=30_000)
    settled_text(page, bots(page).first)
    send(page, "What should I cook tonight?")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length === 2", timeout=30_000
    )
    first_answer = settled_text(page, bots(page).last)

    button(page, "Retry").click()  # a new answer replaces the last one (sampling is on)
    page.wait_for_function(
        "(old) => { const bots = document.querySelectorAll('#chatbot .message.bot');"
        " const now = bots.length === 2 && bots[1].innerText.trim();"
        " return now && now !== old; }",
        arg=first_answer,
        timeout=30_000,
    )
    settled_text(page, bots(page).last)
    assert page.locator("#chatbot .message.user").count() == 2

    button(page, "Undo").click()  # the last exchange goes; its message returns to the box
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length === 1", timeout=30_000
    )
    assert page.locator("#message textarea").input_value() == "What should I cook tonight?"

    button(page, "Edit").first.click()  # rewrite the first message, in French
    page.locator("#chatbot textarea").fill("Bonjour, comment allez-vous ?")
    button(page, "Submit").click()
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=30_000)
    settled_text(page, bots(page).last)
    users = page.locator("#chatbot .message.user")
    assert (
        users.count() == 1 and users.first.inner_text().strip() == "Bonjour, comment allez-vous ?"
    )

    page.reload(wait_until="load")
    page.locator("#chatbot").get_by_text("Bonjour, comment allez-vous ?").wait_for(
        timeout=AFTER_RELOAD_MS
    )
    assert bots(page).count() == 1
    page.screenshot(path=str(tmp_path / "edited.png"))

    page.locator("#new-conversation").click()  # a second one, so that the list shows it loaded
    page.wait_for_function("() => !document.querySelector('#chatbot .message')", timeout=EVENT_MS)
    send(page, "Hello there")
    wait_for_list(page, ["Hello there", "Bonjour, comment allez-vous ?"])
    page.locator("#clear").click()  # Clear deletes the conversation on screen
    wait_for_list(page, ["Bonjour, comment allez-vous ?"])
    assert page.locator("#chatbot .message").count() == 0
    page.reload(wait_until="load")
    wait_for_list(page, ["Bonjour, comment allez-vous ?"], timeout=AFTER_RELOAD_MS)  # it is back...
    assert page.locator("#chatbot .message").count() == 0  # ...and the cleared one is not
    page.close()


def test_a_shared_link_opens_the_conversation_read_only(browser, tiny_app: str):
    page = open_page(browser, tiny_app)
    page.locator("#status").get_by_text("Loading").wait_for(state="detached", timeout=30_000)
    send(page, "Bonjour, comment allez-vous ?")
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=30_000)
    reply = settled_text(page, bots(page).last)
    page.locator("#share").click()
    page.wait_for_function(
        "() => (document.querySelector('#share-link textarea')?.value || '').startsWith('http')",
        timeout=30_000,
    )
    link = page.locator("#share-link textarea").input_value()
    assert link.startswith(f"{tiny_app}/#shared=")

    reader = browser.new_page(viewport={"width": 1100, "height": 900})  # its own localStorage
    reader.goto(link, wait_until="load")
    shared = reader.locator("#shared")
    shared.get_by_text("Bonjour, comment allez-vous ?").wait_for(timeout=30_000)
    assert settled_text(reader, shared.locator(".message.bot").last) == reply
    assert not reader.locator("#message textarea").is_visible()  # read-only: nowhere to type
    assert shared.locator("button[aria-label='Edit'], button[aria-label='Retry']").count() == 0
    reader.locator("#own").click()  # the reader's own conversation, untouched (empty)
    reader.locator("#message textarea").wait_for(timeout=30_000)
    assert reader.locator("#chatbot .message").count() == 0

    reader.goto(f"{tiny_app}/#shared=not-a-conversation", wait_until="load")
    reader.get_by_text("damaged or incomplete").wait_for(timeout=30_000)
    assert reader.locator("#message textarea").is_visible()
    reader.close()
    page.close()
