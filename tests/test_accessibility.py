"""Accessibility in a real browser: axe-core on the page's states, and the keyboard alone.

axe-core comes from npm (pinned in tests/a11y; `make a11y-deps` installs it). Each state's axe
report is saved as JSON under test-reports/axe/; a test fails on "serious" or "critical"
violations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.pages import EVENT_MS, bots, open_page, send

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
REPORTS = Path(__file__).parents[1] / "test-reports" / "axe"
BLOCKING = ("serious", "critical")
FRENCH = "Bonjour, comment allez-vous aujourd'hui ?"
FOLD = "#chatbot .thought-group .title"  # a French turn's "English original" fold
# Examples drawn and no event in progress: Gradio draws a progress overlay into each output of a
# pending event, and the examples' text arrives after the page's first paint.
SETTLED = """() => {
  const examples = [...document.querySelectorAll('.gallery-item')];
  const trackers = [...document.querySelectorAll('[data-testid=status-tracker]')];
  return examples.length > 0 && examples.every((b) => b.innerText.trim())
    && trackers.every((t) => t.classList.contains('hide'));
}"""


@pytest.fixture(scope="module", autouse=True)
def axe_installed() -> None:
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make a11y-deps` (npm ci in tests/a11y).")


def axe_report(page, state: str) -> dict[str, Any]:
    """axe-core's violations on the page as it is now, also saved as test-reports/axe/STATE.json."""
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    report = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{state}.json").write_text(json.dumps(report, indent=2))
    return report


def blocking(report: dict[str, Any]) -> str:
    """One line per serious or critical violation: rule, impact, help, first targets."""
    lines = []
    for rule in report["violations"]:
        if rule["impact"] in BLOCKING:
            targets = [" ".join(map(str, node["target"])) for node in rule["nodes"]]
            lines.append(
                f"{rule['id']} ({rule['impact']}, {len(targets)} nodes): {rule['help']}; "
                f"e.g. {', '.join(targets[:3])}"
            )
    return "\n".join(lines)


def assert_accessible(page, state: str) -> None:
    problems = blocking(axe_report(page, state))
    assert not problems, f"axe-core, {state} (test-reports/axe/{state}.json):\n{problems}"


def wait_streaming(page, chars: int = 40) -> None:
    """Until the last reply is visibly growing (past the pending bubble)."""
    page.wait_for_function(
        "(n) => { const bots = document.querySelectorAll('#chatbot .message.bot');"
        " return bots.length && bots[bots.length - 1].innerText.trim().length > n; }",
        arg=chars,
        timeout=60_000,
    )


def wait_stopped(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chatbot .message.bot')]"
        ".some((bot) => bot.innerText.includes('(stopped)'))",
        timeout=60_000,
    )


def settle(page) -> None:
    page.wait_for_function(SETTLED, timeout=60_000)


def tab_to(page, selector: str, key: str = "Tab", limit: int = 80) -> None:
    """Press ``key`` until the keyboard focus is on ``selector``."""
    for _ in range(limit):
        if page.evaluate("(s) => !!document.activeElement?.matches(s)", selector):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{limit} presses of {key} never reached {selector}")


def test_empty_page(browser, tiny_app: str):
    page = open_page(browser, tiny_app)
    settle(page)
    assert_accessible(page, "empty")
    page.close()


def test_page_while_a_reply_streams(browser, long_app: str):
    """French, because its reply grows slowly (sentence by sentence): an English one would be
    thousands of characters long before axe is done, and redrawing it stalls the page."""
    page = open_page(browser, long_app)
    page.add_script_tag(path=str(AXE))  # now, so that axe starts as soon as the reply does
    send(page, FRENCH)
    wait_streaming(page)
    try:
        assert_accessible(page, "streaming")
    finally:  # the long model would write 20000 tokens
        page.locator("#stop").click()
        wait_stopped(page)
        page.close()


def test_french_turn_with_its_english_original_open(browser, tiny_app: str):
    page = open_page(browser, tiny_app)
    send(page, FRENCH)
    page.locator(FOLD).click()
    page.locator("#chatbot").get_by_text("You:").wait_for(timeout=30_000)
    settle(page)
    assert_accessible(page, "french-fold-open")
    page.close()


def test_keyboard_alone_sends_stops_and_opens_the_english_original(browser, long_app: str):
    page = open_page(browser, long_app)
    tab_to(page, "#message textarea")
    page.keyboard.type(FRENCH)
    page.keyboard.press("Enter")
    wait_streaming(page)

    tab_to(page, "#stop")
    page.keyboard.press("Enter")
    wait_stopped(page)
    assert "(stopped)" in bots(page).first.inner_text()

    # Back from Stop to the fold's title (role=button; the page takes Gradio's arrow button
    # inside it out of the focus order). Gradio opens it on Enter, not on Space.
    tab_to(page, FOLD, key="Shift+Tab")
    assert page.locator(FOLD).get_attribute("aria-expanded") == "false"
    page.keyboard.press("Enter")
    page.locator("#chatbot").get_by_text("You:").wait_for(timeout=EVENT_MS)
    page.wait_for_function(
        "(s) => document.querySelector(s)?.getAttribute('aria-expanded') === 'true'",
        arg=FOLD,
        timeout=EVENT_MS,
    )
    page.close()
