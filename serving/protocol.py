"""The chat API's request schema and events, shared by the WebSocket and HTTP routes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.config import RouterSettings
from serving.errors import InvalidRequestError


@dataclass(frozen=True)
class PromptInfo:
    """The first item of every reply stream: how much of the conversation the model sees."""

    history_dropped: int  # oldest history messages left out to fit the model's context
    prompt_tokens: int
    message_truncated: bool = False  # only the end of the message fitted (seq2seq models)


@dataclass(frozen=True)
class ReplyInfo:
    """The last item of every reply stream: what the reply cost and why it ended."""

    completion_tokens: int
    finish_reason: Literal["stop", "length"]


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """One turn: the new message and the conversation so far, in English, as the server sent it."""

    model_config = ConfigDict(extra="ignore")

    message: str
    history: list[Turn] = Field(default_factory=list)


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
    for turn in request.history:
        turn.content = clean_text(turn.content)
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


def start_event(language: str, message_en: str, history_dropped: int = 0) -> dict[str, Any]:
    """``history_dropped``: how many of the oldest history messages the model could not see."""
    return {
        "type": "start",
        "language": language,
        "message_en": message_en,
        "history_dropped": history_dropped,
    }


def delta_event(text: str, text_en: str | None = None) -> dict[str, Any]:
    """On French turns, ``text_en`` (with the first piece of each sentence) is its English."""
    event = {"type": "delta", "text": text}
    if text_en is not None:
        event["text_en"] = text_en
    return event


def done_event(
    reply: str,
    reply_en: str,
    message_en: str,
    language: str,
    history_dropped: int = 0,
    usage: dict[str, int] | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """``usage``: the chat model's prompt and completion tokens; ``finish_reason``: stop/length."""
    return {
        "type": "done",
        "reply": reply,
        "reply_en": reply_en,
        "message_en": message_en,
        "language": language,
        "history_dropped": history_dropped,
        "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "finish_reason": finish_reason,
    }


def error_event(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
