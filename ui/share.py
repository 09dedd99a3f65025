"""A conversation carried in a link: compressed into the URL fragment, nothing kept on a server.

The fragment (``#shared=...``) never reaches a server: the page reads it in the browser and
hands it to its own handler, which decodes it with size limits (a link is untrusted input).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from serving.errors import ChatServiceError
from ui.conversations import LANGUAGE_CODE

FRAGMENT_KEY = "shared"
MAX_LINK_CHARS = 60_000  # long links break in chat apps and mail clients well before browsers
MAX_DECODED_BYTES = 1_000_000
_FIELDS = ("user", "assistant", "user_en", "assistant_en")


class ShareError(ChatServiceError):
    code = "bad_share_link"
    http_status = 400


def _language(code: Any) -> str:
    """A turn's language code as a link carries it; anything else reads as English."""
    return code if isinstance(code, str) and LANGUAGE_CODE.fullmatch(code) else "en"


def encode(turns: list[dict[str, Any]]) -> str:
    """The fragment token for ``turns`` (what the person saw, and the English side)."""
    kept = [
        {
            **{field: str(turn.get(field, "")) for field in _FIELDS},
            "language": _language(turn.get("language")),
            "stopped": bool(turn.get("stopped")),
        }
        for turn in turns
    ]
    packed = zlib.compress(json.dumps(kept, ensure_ascii=False).encode(), level=9)
    token = base64.urlsafe_b64encode(packed).decode().rstrip("=")
    if len(token) > MAX_LINK_CHARS:
        raise ShareError(
            "This conversation is too long to fit in a link. Undo a few exchanges or share "
            "a shorter one."
        )
    return token


def decode(token: str) -> list[dict[str, Any]]:
    """The turns in a fragment token, or ``ShareError`` saying the link is damaged."""
    damaged = ShareError("This shared link is damaged or incomplete: ask for the whole link again.")
    if not token or len(token) > MAX_LINK_CHARS:
        raise damaged
    try:
        packed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail:  # a bomb, or far more than any shared chat
            raise damaged
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError):
        raise damaged from None
    if not isinstance(data, list) or not all(isinstance(turn, dict) for turn in data):
        raise damaged
    turns = []
    for turn in data:
        if not all(isinstance(turn.get(field), str) for field in _FIELDS):
            raise damaged
        turns.append(
            {
                **{field: turn[field] for field in _FIELDS},
                "language": _language(turn.get("language")),
                "stopped": turn.get("stopped") is True,
            }
        )
    return turns


def token_in(fragment: str) -> str | None:
    """The token of a ``#shared=...`` fragment, or None for any other fragment."""
    prefix = f"#{FRAGMENT_KEY}="
    return fragment[len(prefix) :] if fragment and fragment.startswith(prefix) else None
