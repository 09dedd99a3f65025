"""The page in a real browser: Debian's headless Chromium driven by Playwright."""

import shutil
from pathlib import Path

import pytest

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


def test_chat_streams_in_the_page_and_survives_a_reload(browser, tiny_app: str, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(tiny_app + "/", wait_until="load")
    box = page.locator("#message textarea")
    box.wait_for(timeout=30_000)

    # Record every length the reply takes in the DOM: a streamed reply takes several.
    page.evaluate(RECORD_REPLY_LENGTHS)
    box.fill("Bonjour, comment allez-vous aujourd'hui ?")
    box.press("Enter")
    bot = page.locator("#chatbot .message.bot").last  # assistant bubbles
    bot.wait_for(timeout=30_000)
    reply = _settled_text(page, bot)
    lengths = page.evaluate("() => window.replyLengths")
    assert len(set(lengths)) > 2, f"the reply did not grow while streaming: {lengths}"
    assert reply

    page.reload(wait_until="load")
    page.locator("#chatbot").get_by_text("Bonjour, comment allez-vous aujourd'hui ?").wait_for(
        timeout=30_000
    )
    assert page.locator("#chatbot .message.bot").last.inner_text().strip() == reply

    box = page.locator("#message textarea")
    box.fill("What should I cook tonight?")
    page.locator("#send").click()
    page.locator("#chatbot .message.user").nth(1).wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message.bot').length >= 2", timeout=60_000
    )
    page.screenshot(path=str(tmp_path / "page.png"))  # kept by pytest for a look on failure
    page.locator("#clear").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .message').length === 0", timeout=30_000
    )
    page.close()
