"""Driving the page in Debian's headless Chromium (Playwright), as a person would."""

import shutil
import time

from ui.list_handlers import STORAGE_KEY

TEST_SECRET = "test-secret"  # the tiny graphs' ui.storage_secret (serving/testing/tiny_models.py)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# One event's round trip through the page's queue (a click, its handler, the redraw). It takes
# well under a second here; on the CI machine, while the suite ran, requests that take a few
# milliseconds here took about a second (/api/healthz 1.1 s). The wait is generous on purpose:
# it only costs time when something is wrong, and then the test fails all the same.
EVENT_MS = 30_000
# After a reload the page boots again and reads its storage through the server's queue: on a
# busy 2-core machine that takes longer than an event does.
AFTER_RELOAD_MS = 60_000
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


REPLIES = (
    "() => { const d = document.querySelector('#chatbot')?.dataset || {};"
    " return [Number(d.started || 0), Number(d.ended || 0)]; }"
)


def settled_text(page, locator, timeout: float = 120_000) -> str:
    """The element's text once every reply that the page started has ended (the page counts
    them on the chat log, ``ui/page.py``), its turn stored."""
    page.wait_for_function(
        f"() => {{ const [s, e] = ({REPLIES})(); return e >= s; }}", timeout=timeout
    )
    return locator.inner_text().strip()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/", wait_until="load")
    page.locator("#message textarea").wait_for(timeout=30_000)
    return page


def send(page, message: str) -> None:
    """Type ``message`` and press Enter; returns once the page has started its reply."""
    started = page.evaluate(REPLIES)[0]
    box = page.locator("#message textarea")
    box.fill(message)
    box.press("Enter")
    page.wait_for_function(f"() => ({REPLIES})()[0] > {started}", timeout=EVENT_MS)


def button(page, label: str):
    return page.locator(f"#chatbot button[aria-label='{label}']")


def bots(page):
    return page.locator("#chatbot .message.bot")  # one group per assistant reply (and its fold)


def listed(page) -> list[str]:
    """The titles in the list of conversations, newest first."""
    return [text.strip() for text in page.locator("#conversations label").all_inner_texts()]


def stored_titles(page, secret: str) -> list[str]:
    """The titles in the list that localStorage holds (sealed by the server with ``secret``)."""
    from ui.conversation_files import unseal

    token = page.evaluate(f"() => localStorage.getItem('{STORAGE_KEY}')")
    return [c["title"] for c in unseal(token, secret)["conversations"]] if token else []


def what_else_shows(page, secret: str | None) -> str:
    """For a failure's message: what localStorage holds, and the page's notices and toasts."""
    from ui.conversations import ConversationError

    try:
        stored = stored_titles(page, secret) if secret else "?"
    except ConversationError as error:  # a list that does not unseal is itself the finding
        stored = f"unreadable ({error.message})"
    shown = page.evaluate(
        "() => [...document.querySelectorAll('.toast-messages, #status, #notice, #list-notice')]"
        ".map((element) => element.innerText.trim()).filter(Boolean)"
    )
    return f"; localStorage holds {stored}; the page says {shown}"


def wait_for_list(page, titles: list[str], secret: str | None = TEST_SECRET, timeout=30_000):
    """Until the list of conversations shows exactly ``titles``, in this order, and (given the
    page's ``secret``) localStorage holds the same list, so that a reload reads it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "(titles) => JSON.stringify([...document.querySelectorAll('#conversations label')]"
            ".map((label) => label.innerText.trim())) === JSON.stringify(titles)",
            arg=titles,
            timeout=timeout,
        )
    except PlaywrightTimeout:
        raise AssertionError(
            f"the list shows {listed(page)}, not {titles}{what_else_shows(page, secret)}"
        ) from None
    if secret is None:
        return
    deadline = time.monotonic() + timeout / 1000
    while (stored := stored_titles(page, secret)) != titles:
        if time.monotonic() > deadline:
            raise AssertionError(f"localStorage holds {stored}, not {titles}")
        page.wait_for_timeout(50)  # the page writes it just after it shows it
