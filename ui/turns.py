"""What the page and the model are shown of a conversation's stored turns
(``serving.events.StoredTurn``)."""

from __future__ import annotations

from typing import Any

from serving.detect import language_name
from serving.events import StoredTurn

ENGLISH_ORIGINAL = "English original"
STOPPED_MARK = "\n\n*(stopped)*"
TEXT_FIELDS = ("user", "assistant", "user_en", "assistant_en")


def to_messages(turns: list[StoredTurn]) -> list[dict[str, Any]]:
    """What the chat window shows: the conversation in the person's own language.

    A translated turn (French, German...) also gets a closed "English original" fold with what
    the model read and wrote.
    """
    messages: list[dict[str, Any]] = []
    for turn in turns:
        reply = turn["assistant"] + (STOPPED_MARK if turn.get("stopped") else "")
        messages.append({"role": "user", "content": turn["user"]})
        messages.append({"role": "assistant", "content": reply})
        if turn.get("language", "en") != "en":
            english = f"**You:** {turn['user_en']}\n\n**Assistant:** {turn['assistant_en']}"
            messages.append(
                {
                    "role": "assistant",
                    "content": english,
                    "metadata": {"title": ENGLISH_ORIGINAL, "status": "done"},
                }
            )
    return messages


def turn_at(turns: list[StoredTurn], message_index: int) -> int:
    """The turn that the chat window's message ``message_index`` belongs to."""
    for index in range(len(turns)):
        if message_index < len(to_messages(turns[: index + 1])):
            return index
    return len(turns) - 1


def to_history_en(turns: list[StoredTurn]) -> list[dict[str, str]]:
    """What the model sees: the English side of every turn."""
    history: list[dict[str, str]] = []
    for turn in turns:
        history.append({"role": "user", "content": turn["user_en"]})
        history.append({"role": "assistant", "content": turn["assistant_en"]})
    return history


def conversation_language(turns: list[StoredTurn]) -> str | None:
    """The language the conversation has been in: its last turn's (None for a new one)."""
    return turns[-1].get("language") if turns else None


def notice_for(turns: list[StoredTurn]) -> str:
    """Says when the last message was read as English although it was not (a language not
    served, or too short to tell), and when the model no longer sees the conversation's start."""
    last = turns[-1] if turns else {}
    notes = []
    if last.get("reason") == "unserved":
        notes.append(
            f"ℹ️ {language_name(last.get('heard') or '')} is not one of the languages this "
            "service speaks: your message went to the English chat model untranslated, so "
            "the reply may be poor or in another language."
        )
    elif last.get("reason") == "unsure":
        notes.append(
            "ℹ️ This message is too short or too mixed to tell its language, so it was read "
            "as English."
        )
    if dropped := last.get("history_dropped", 0):
        notes.append(
            f"ℹ️ This conversation is longer than the model can read: its first {dropped} "
            "messages are no longer in the model's view. Start a new conversation to start "
            "afresh."
        )
    return "\n\n".join(notes)


def message_text(value: Any) -> str:
    """A message's text, whether Gradio hands it over as a string or as content parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return message_text(value.get("text", value.get("content", "")))
    if isinstance(value, list):
        return "".join(message_text(part) for part in value)
    return str(value or "")
