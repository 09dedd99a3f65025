"""A conversation outside the page: the list sealed for localStorage, and a conversation
exported as Markdown or JSON, and imported back."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from serving.events import StoredTurn
from ui.conversations import MAX_TITLE_CHARS, ConversationError, clean_turns, title_for
from ui.turns import ENGLISH_ORIGINAL

FILE_FORMAT = "polyglot-chat"
FILE_VERSION = 1
MAX_IMPORT_BYTES = 1_000_000  # the page refuses bigger files before they leave the browser


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(f"polyglot-chat conversations:{secret}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(saved: dict[str, Any], secret: str) -> str:
    """The stored list as the browser keeps it: encrypted and signed."""
    text = json.dumps(saved, ensure_ascii=False, separators=(",", ":"))
    return _fernet(secret).encrypt(text.encode()).decode()


def unseal(token: str, secret: str) -> dict[str, Any]:
    """The stored list back, or ``ConversationError`` if it was made with another key or
    changed since."""
    try:
        saved = json.loads(_fernet(secret).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise ConversationError(
            "The list of conversations kept in this browser cannot be read (it was changed, or "
            "saved by a server with another key), so a new list begins."
        ) from None
    return saved if isinstance(saved, dict) else {}


def to_markdown(title: str, turns: list[StoredTurn], exported: datetime | None = None) -> str:
    """A readable copy: each exchange, and for a translated one its English original, folded."""
    exported = exported or datetime.now(UTC)
    lines = [f"# {title}", "", f"*Exported from Polyglot chat on {exported:%Y-%m-%d %H:%M} UTC*"]
    for turn in turns:
        reply = turn["assistant"] + (" *(stopped)*" if turn.get("stopped") else "")
        lines += ["", f"**You:** {turn['user']}", "", f"**Assistant:** {reply}"]
        if turn.get("language", "en") != "en":
            lines += [
                "",
                f"<details><summary>{ENGLISH_ORIGINAL}</summary>",
                "",
                f"**You:** {turn['user_en']}",
                "",
                f"**Assistant:** {turn['assistant_en']}",
                "",
                "</details>",
            ]
    return "\n".join(lines) + "\n"


def to_file(title: str, turns: list[StoredTurn], exported: datetime | None = None) -> str:
    """The re-importable JSON file: the stored turns as they are."""
    exported = exported or datetime.now(UTC)
    data = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "title": title,
        "exported": exported.isoformat(timespec="seconds"),
        "turns": turns,
    }
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def from_file(text: str) -> tuple[str, list[StoredTurn]]:
    """The title and turns of an exported file, or ``ConversationError`` saying what is wrong."""
    if len(text.encode()) > MAX_IMPORT_BYTES:
        raise ConversationError(
            f"This file is over {MAX_IMPORT_BYTES // 1_000_000} MB: it is not a conversation "
            "exported from this page."
        )
    try:
        data = json.loads(text)
    except ValueError:
        raise ConversationError(
            "This file is not JSON. Import a file made by “Export JSON”."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise ConversationError(
            "This JSON file is not a conversation exported from this page (“Export JSON”)."
        )
    if data.get("version") != FILE_VERSION:
        raise ConversationError(
            f"This conversation file has version {data.get('version')!r}; this page reads "
            f"version {FILE_VERSION}."
        )
    try:
        turns = clean_turns(data.get("turns"))
    except ValueError as error:
        raise ConversationError(f"This conversation file is damaged: {error}.") from None
    title = data.get("title")
    title = " ".join(title.split())[:MAX_TITLE_CHARS] if isinstance(title, str) else ""
    return title or title_for(turns), turns
