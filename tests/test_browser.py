"""The page in a real browser: Debian's headless Chromium driven by Playwright."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import LONG_REPLY_TOKENS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


RECORD_REPLY_LENGTHS = """() => {
  window.replyLengths = [];
  const chat = document.querySelector('#chatbot');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll('.message.bot');
    if (bots.length) window.replyLengths.push(bots[bots.length - 1].innerText.trim().length);
  }).observe(chat, {childList: true, subtree: true, characterData: true});
}"""


def _settled_text(page, locator, quiet_ms: int = 1500) -> str:
    """The element's text once it has stopped changing (the turn is done and stored)."""
    text, still = locator.inner_text(), 0
    while still < quiet_ms:
        page.wait_for_timeout(100)
        now = locator.inner_text()
        still = still + 100 if now == text else 0
        text = now
    return text.strip()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make browser-deps` (Debian's chromium package).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/", wait_until="load")
    page.locator("#message textarea").wait_for(timeout=30_000)
    return page


def _send(page, message: str) -> None:
    box = page.locator("#message textarea")
    box.fill(message)
    box.press("Enter")


def _button(page, label: str):
    return page.locator(f"#chatbot button[aria-label='{label}']")


def _bots(page):
    return page.locator("#chatbot .message.bot")  # one group per assistant reply (and its fold)


def test_french_reply_streams_stops_when_asked_and_survives_a_reload(
    browser, long_app: str, tmp_path: Path
):
    """The long graph's chat model would write 20000 tokens: Stop ends it mid-way."""
    from ray import serve

    chat = serve.get_deployment_handle("ChatModel", app_name="long-api")

    def activity() -> dict[str, int]:
        with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs an event loop here
            return pool.submit(lambda: chat.activity.remote().result()).result()

    steps_before = activity()["steps"]
    page = _open(browser, long_app)
    page.evaluate(RECORD_REPLY_LENGTHS)
    _send(page, "Bonjour, comment allez-vous aujourd'hui ?")
    # French text appears while the English reply is still being written (past the 15 characters
    # of the pending bubble)...
    page.wait_for_function(
        "() => window.replyLengths.length && Math.max(...window.replyLengths) > 40",
        timeout=60_000,
    )
    page.locator("#stop").click()
    reply = _settled_text(page, _bots(page).last)
    lengths = page.evaluate("() => window.replyLengths")
    assert len(set(lengths)) > 2, f"the reply did not grow while streaming: {lengths}"
    assert "(stopped)" in reply and "English original" in reply
    # ...and Stop reached the model: its replica is idle, far from the reply's full length.
    after = activity()
    generated = after["steps"] - steps_before
    assert after["active"] == 0 and generated < LONG_REPLY_TOKENS / 2, after

    page.reload(wait_until="load")
    page.locator("#chatbot").get_by_text("Bonjour, comment allez-vous aujourd'hui ?").wait_for(
        timeout=30_000
    )
    assert _settled_text(page, _bots(page).last) == reply
    page.locator("#chatbot").get_by_text("English original").click()  # the fold opens
    page.locator("#chatbot").get_by_text("You:").wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "stopped.png"))  # kept by pytest for a look on failure
    page.close()


def test_retry_undo_edit_and_clear(browser, tiny_app: str, tmp_path: Path):
    page = _open(browser, tiny_app)
    _send(page, "Hello there")
    _bots(page).first.wait_for(timeout=30_000)
    _settled_text(page, _bots(page).first)
    _send(page, "What should I cook tonight?")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length === 2", timeout=30_000
    )
    first_answer = _settled_text(page, _bots(page).last)

    _button(page, "Retry").click()  # a new answer replaces the last one (sampling is on)
    page.wait_for_function(
        "(old) => { const bots = document.querySelectorAll('#chatbot .message.bot');"
        " const now = bots.length === 2 && bots[1].innerText.trim();"
        " return now && now !== old; }",
        arg=first_answer,
        timeout=30_000,
    )
    _settled_text(page, _bots(page).last)
    assert page.locator("#chatbot .message.user").count() == 2

    _button(page, "Undo").click()  # the last exchange goes; its message returns to the box
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length === 1", timeout=30_000
    )
    assert page.locator("#message textarea").input_value() == "What should I cook tonight?"

    _button(page, "Edit").first.click()  # rewrite the first message, in French
    page.locator("#chatbot textarea").fill("Bonjour, comment allez-vous ?")
    _button(page, "Submit").click()
    page.locator("#chatbot").get_by_text("English original").wait_for(timeout=30_000)
    _settled_text(page, _bots(page).last)
    users = page.locator("#chatbot .message.user")
    assert (
        users.count() == 1 and users.first.inner_text().strip() == "Bonjour, comment allez-vous ?"
    )

    page.reload(wait_until="load")
    page.locator("#chatbot").get_by_text("Bonjour, comment allez-vous ?").wait_for(timeout=30_000)
    assert _bots(page).count() == 1
    page.screenshot(path=str(tmp_path / "edited.png"))

    page.locator("#clear").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message').length === 0", timeout=30_000
    )
    page.reload(wait_until="load")
    page.locator("#message textarea").wait_for(timeout=30_000)
    page.wait_for_timeout(1500)  # the stored conversation would be shown by now
    assert page.locator("#chatbot .message").count() == 0
    page.close()
