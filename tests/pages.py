"""Driving the page in Debian's headless Chromium (Playwright), as a person would."""

import shutil

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


def settled_text(page, locator, quiet_ms: int = 1500) -> str:
    """The element's text once it has stopped changing (the turn is done and stored)."""
    text, still = locator.inner_text(), 0
    while still < quiet_ms:
        page.wait_for_timeout(100)
        now = locator.inner_text()
        still = still + 100 if now == text else 0
        text = now
    return text.strip()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/", wait_until="load")
    page.locator("#message textarea").wait_for(timeout=30_000)
    return page


def send(page, message: str) -> None:
    box = page.locator("#message textarea")
    box.fill(message)
    box.press("Enter")


def button(page, label: str):
    return page.locator(f"#chatbot button[aria-label='{label}']")


def bots(page):
    return page.locator("#chatbot .message.bot")  # one group per assistant reply (and its fold)
