"""The chat API's request: its schema, limits and the refusals that say what to fix.

The events that answer it are in ``serving.events``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.config import RouterSettings
from serving.errors import InvalidRequestError


class HistoryEntry(BaseModel):
    """One message of the conversation so far, as the model reads it (English)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """One turn: the new message and the conversation so far, in English, as the server sent it."""

    model_config = ConfigDict(extra="ignore")

    message: str
    history: list[HistoryEntry] = Field(default_factory=list)
    # The conversation's language so far (the last ``done`` event's ``language``): a message
    # too short or too mixed to tell its own ("Oui", "ok") is read in it (English or served).
    language: str | None = Field(None, max_length=16)


def _first_problem(error: ValidationError) -> str:
    item = error.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in item["loc"])
    where = where.lstrip(".") or "request"
    if item["type"] == "missing":
        return f"'{where}' is missing."
    if item["type"] == "literal_error":
        return f"'{where}' must be 'user' or 'assistant'."
    return f"'{where}' is not valid: {item['msg']}."


# C0 and C1 control characters, DEL included, but not tab and newline (text layout).
# Format characters (zero-width joiners in emoji, bidi marks in Arabic or Hebrew) are kept.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """What the models may see: line ends made plain, control characters removed."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def read_json(raw: str | bytes, max_bytes: int, expected: str) -> Any:
    """A request body or frame as JSON, refused when it is too large or not JSON at all
    (``expected`` says what to send instead); deep nesting counts as not JSON."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise InvalidRequestError(
            f"The request has {size} bytes; the limit is {max_bytes}. "
            "Send a shorter message or history."
        )
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestError(expected) from None


def parse_request(raw: str | bytes | dict[str, Any], settings: RouterSettings) -> ChatRequest:
    """Validate a client's request or raise ``InvalidRequestError`` naming what to fix."""
    if not isinstance(raw, dict):
        raw = read_json(
            raw,
            settings.max_request_bytes,
            'Send one JSON object per turn: {"message": "...", "history": [...]}.',
        )
    if not isinstance(raw, dict):
        raise InvalidRequestError('The request must be a JSON object with a "message" field.')
    try:
        request = ChatRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequestError(_first_problem(exc)) from None
    request.message = clean_text(request.message)
    if request.language is not None:  # as the events write it: "fr", not "FR "
        request.language = request.language.strip().lower() or None
    for entry in request.history:
        entry.content = clean_text(entry.content)
    if not request.message.strip():
        raise InvalidRequestError("The message is empty: type something to send.")
    if len(request.message) > settings.max_message_chars:
        raise InvalidRequestError(
            f"The message has {len(request.message)} characters; the limit is "
            f"{settings.max_message_chars}. Shorten it and send it again."
        )
    if len(request.history) > settings.max_history_turns:
        raise InvalidRequestError(
            f"The history has {len(request.history)} entries; the limit is "
            f"{settings.max_history_turns}. Start a new conversation."
        )
    return request
