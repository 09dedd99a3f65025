"""The list of conversations in a real browser: kept in localStorage, exported and imported as
files that never touch the server."""

import json
from pathlib import Path

import pytest

from tests.pages import (
    AFTER_RELOAD_MS,
    EVENT_MS,
    TEST_SECRET,
    bots,
    listed,
    open_page,
    send,
    settled_text,
    wait_for_list,
    what_else_shows,
)
from tests.support import api_ws_url
from ui.list_handlers import STORAGE_KEY

pytestmark = pytest.mark.browser


def chat_text(page) -> list[str]:
    return [text.strip() for text in page.locator("#chatbot .message").all_inner_texts()]


def same_chat(page, texts: list[str]) -> None:
    """Until the chat window shows ``texts``; if it does not, the failure says what it shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "(texts) => JSON.stringify([...document.querySelectorAll('#chatbot .message')]"
            ".map((m) => m.innerText.trim())) === JSON.stringify(texts)",
            arg=texts,
            timeout=EVENT_MS,
        )
    except PlaywrightTimeout:
        raise AssertionError(
            f"the chat window shows {chat_text(page)}, not {texts}; the list shows "
            f"{listed(page)}{what_else_shows(page, TEST_SECRET)}"
        ) from None


def test_conversations_are_listed_switched_renamed_deleted_and_kept(browser, tiny_app: str):
    page = open_page(browser, tiny_app)
    send(page, "Hello there")
    settled_text(page, bots(page).last)
    wait_for_list(page, ["Hello there"])  # named after its first message
    first = chat_text(page)

    page.locator("#new-conversation").click()
    page.wait_for_function("() => !document.querySelector('#chatbot .message')", timeout=EVENT_MS)
    send(page, "Bonjour, comment allez-vous ?")
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=30_000)
    settled_text(page, bots(page).last)
    wait_for_list(page, ["Bonjour, comment allez-vous ?", "Hello there"])  # newest first
    second = chat_text(page)

    page.locator("#conversations label", has_text="Hello there").click()
    same_chat(page, first)
    page.wait_for_function(  # the name box follows the conversation on screen
        "() => document.querySelector('#conversation-name input').value === 'Hello there'",
        timeout=EVENT_MS,
    )
    page.locator("#conversation-name input").fill("Greetings")
    page.locator("#rename").click()
    wait_for_list(page, ["Bonjour, comment allez-vous ?", "Greetings"])

    page.reload(wait_until="load")  # the list, its names and the open conversation are kept
    wait_for_list(page, ["Bonjour, comment allez-vous ?", "Greetings"], timeout=AFTER_RELOAD_MS)
    page.wait_for_function(
        "(n) => document.querySelectorAll('#chatbot .message').length === n",
        arg=len(first),
        timeout=EVENT_MS,
    )
    assert chat_text(page) == first
    page.locator("#conversations label", has_text="Bonjour").click()
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=EVENT_MS)
    assert chat_text(page) == second

    page.locator("#delete").click()  # the conversation on screen goes; an empty one opens
    wait_for_list(page, ["Greetings"])
    assert page.locator("#chatbot .message").count() == 0
    page.reload(wait_until="load")
    wait_for_list(page, ["Greetings"], timeout=AFTER_RELOAD_MS)
    assert page.locator("#chatbot .message").count() == 0
    page.close()


def test_two_tabs_of_one_browser_keep_each_other_s_conversations(browser, tiny_app: str):
    """Tabs share the browser's storage: each merges the list that the other wrote, so that
    neither drops the other's conversations, and a conversation open in both is redrawn in the
    one that did not change it."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    one, two = context.new_page(), context.new_page()
    one.goto(tiny_app + "/", wait_until="load")
    # A page writes the list once it has read it. The second tab opens after that write, so it
    # opens on the conversation that the first has on screen (before it, it has its own).
    one.wait_for_function(f"() => localStorage.getItem('{STORAGE_KEY}')", timeout=30_000)
    two.goto(tiny_app + "/", wait_until="load")
    for page in (one, two):
        page.locator("#message textarea").wait_for(timeout=30_000)
    # The button that the storage event presses is in the page, but no one can see or reach it.
    assert not one.locator("#list-changed").is_visible()
    assert not one.evaluate(
        "() => { const b = document.getElementById('list-changed'); b.focus();"
        " return document.activeElement === b; }"
    )

    send(one, "Hello from one")
    settled_text(one, bots(one).last)
    wait_for_list(one, ["Hello from one"])
    wait_for_list(two, ["Hello from one"])  # merged; the second tab opened on the same one,
    same_chat(two, chat_text(one))  # the conversation that storage had open: redrawn there
    two.locator("#new-conversation").click()
    two.wait_for_function("() => !document.querySelector('#chatbot .message')", timeout=EVENT_MS)
    send(two, "Hello from two")
    settled_text(two, bots(two).last)
    wait_for_list(two, ["Hello from two", "Hello from one"])  # one's conversation is kept
    wait_for_list(one, ["Hello from two", "Hello from one"])
    assert chat_text(one)[0] == "Hello from one"  # the first tab still shows its own

    two.locator("#conversations label", has_text="Hello from one").click()
    two.wait_for_function(
        "() => document.querySelector('#conversation-name input').value === 'Hello from one'",
        timeout=EVENT_MS,
    )
    send(two, "And again")
    settled_text(two, bots(two).last)
    same_chat(one, chat_text(two))  # the first tab redraws what the second went on with

    one.reload(wait_until="load")
    wait_for_list(one, ["Hello from one", "Hello from two"], timeout=AFTER_RELOAD_MS)
    context.close()


def test_export_then_import_into_a_fresh_browser_gives_the_same_conversation(
    browser, tiny_app: str, tmp_path: Path
):
    page = open_page(browser, tiny_app)
    send(page, "Bonjour, comment allez-vous ?")
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=30_000)
    settled_text(page, bots(page).last)
    wait_for_list(page, ["Bonjour, comment allez-vous ?"])
    original = chat_text(page)
    assert any("English original" in text for text in original)
    files = {}
    for button, name in (("#export-json", "conversation.json"), ("#export-md", "conversation.md")):
        with page.expect_download(timeout=EVENT_MS) as download:
            page.locator(button).click()
        files[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[name])
    assert files["conversation.json"].name == "Bonjour-comment-allez-vous.json"
    markdown = files["conversation.md"].read_text()
    assert markdown.startswith("# Bonjour, comment allez-vous ?\n")
    assert "**You:** Bonjour, comment allez-vous ?" in markdown
    assert "<details><summary>English original</summary>" in markdown
    exported = json.loads(files["conversation.json"].read_text())
    assert exported["format"] == "polyglot-chat" and len(exported["turns"]) == 1
    page.close()

    fresh = open_page(browser, tiny_app)  # a new browser context: its own, empty storage
    assert listed(fresh) == []
    with fresh.expect_file_chooser(timeout=10_000) as chooser:
        fresh.locator("#import").click()
    chooser.value.set_files(str(files["conversation.json"]))
    wait_for_list(fresh, ["Bonjour, comment allez-vous ?"])
    same_chat(fresh, original)  # its "English original" fold included

    for content, says in (
        ("{not json", "not JSON"),
        (json.dumps({"format": "polyglot-chat", "version": 1, "turns": [{"user": 3}]}), "damaged"),
        ("x" * 1_000_100, "over 1 MB"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with fresh.expect_file_chooser(timeout=10_000) as chooser:
            fresh.locator("#import").click()
        chooser.value.set_files(str(bad))
        fresh.get_by_text(says).first.wait_for(timeout=EVENT_MS)
        assert listed(fresh) == ["Bonjour, comment allez-vous ?"]  # nothing changed
        assert chat_text(fresh) == original
    fresh.close()


@pytest.fixture(scope="module")
def small_storage_page(tiny_graph, tiny_app: str) -> str:
    """A second page on the tiny graph's API whose list may take only 4 KiB."""
    ui = {"browser_storage_kib": 4, "api_url": api_ws_url(tiny_app)}
    with tiny_graph("/small", {"ui": ui}, parts=["ui"]) as base:
        yield base  # deployed: it is running


def conversation_file(path: Path, title: str, size: int) -> Path:
    turn = {"user": title, "assistant": "x" * size, "user_en": title, "assistant_en": "x" * size}
    data = {"format": "polyglot-chat", "version": 1, "title": title, "turns": [turn]}
    path.write_text(json.dumps(data))
    return path


def test_past_the_storage_budget_the_oldest_conversations_go_with_a_notice(
    browser, small_storage_page: str, tmp_path: Path
):
    page = open_page(browser, small_storage_page)
    for number, title in enumerate(("First", "Second", "Third"), start=1):
        with page.expect_file_chooser(timeout=10_000) as chooser:
            page.locator("#import").click()
        chooser.value.set_files(str(conversation_file(tmp_path / f"{number}.json", title, 550)))
        page.locator("#conversations label", has_text=title).wait_for(timeout=EVENT_MS)
    assert listed(page) == ["Third", "Second", "First"]  # 3 × 1.3 KB fit in 4 KiB, 4 do not
    assert page.locator("#list-notice").inner_text().strip() == ""

    with page.expect_file_chooser(timeout=10_000) as chooser:
        page.locator("#import").click()
    chooser.value.set_files(str(conversation_file(tmp_path / "4.json", "Fourth", 550)))
    wait_for_list(page, ["Fourth", "Third", "Second"])  # the oldest went...
    notice = page.locator("#list-notice")
    notice.get_by_text("“First”").wait_for(timeout=EVENT_MS)  # ...and the page says which
    assert "storage" in notice.inner_text()
    page.reload(wait_until="load")
    wait_for_list(page, ["Fourth", "Third", "Second"], timeout=AFTER_RELOAD_MS)
    stored = page.evaluate("() => localStorage.getItem('polyglot-chat-conversations').length")
    assert stored < 4 * 1024 * 4 / 3 + 64  # encrypted: base64 of at most the budget
    page.close()
