"""The list of conversations kept in the browser (the files that carry it are in
``ui.conversation_files``).

The server stores nothing: the list lives in the browser's localStorage, sealed (encrypted and
signed) with a key that stays on the server, so a list that was changed or damaged reads as
such. The page reads the list from localStorage itself when it opens and writes it back after
each change; a write that the browser refuses is shown, not lost in the console.

localStorage holds about 5 million characters per site. The list is kept under a budget of JSON
bytes (``ui.browser_storage_kib``) that leaves room for the conversation on screen's own copy
and for the seal's base64: past it, the oldest conversations go first, with a notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from serving.errors import ChatServiceError
from serving.events import StoredTurn
from ui.turns import TEXT_FIELDS

LIST_VERSION = 1  # of the list as localStorage keeps it
MAX_IMPORT_TURNS = 1000
MAX_TITLE_CHARS = 80
MAX_DELETED = 200  # the newest deletions the list remembers, for the other tabs
UNTITLED = "New conversation"
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # a stored turn's language


class ConversationError(ChatServiceError):
    code = "bad_conversation"
    http_status = 400


def title_for(turns: list[StoredTurn]) -> str:
    """A conversation is named after its first message, on one line."""
    if not turns:
        return UNTITLED
    words = " ".join(str(turns[0]["user"]).split())
    return words if len(words) <= 48 else words[:47].rstrip() + "…"


def clean_turns(data: Any) -> list[StoredTurn]:
    """Stored turns from untrusted data (an imported file, or storage written by another
    version), or ``ValueError`` saying what is wrong."""
    if not isinstance(data, list) or not data:
        raise ValueError("it holds no turns")
    if len(data) > MAX_IMPORT_TURNS:
        raise ValueError(f"it holds more than {MAX_IMPORT_TURNS} turns")
    turns = []
    for number, raw in enumerate(data, start=1):
        if not isinstance(raw, dict) or not all(isinstance(raw.get(f), str) for f in TEXT_FIELDS):
            raise ValueError(f"turn {number} lacks one of {', '.join(TEXT_FIELDS)}")
        language = raw.get("language", "en")
        if not isinstance(language, str) or not LANGUAGE_CODE.fullmatch(language):
            raise ValueError(f"turn {number} has no valid language code")
        turn: StoredTurn = {name: raw[name] for name in TEXT_FIELDS} | {"language": language}
        if raw.get("stopped") is True:
            turn["stopped"] = True
        dropped = raw.get("history_dropped")
        if isinstance(dropped, int) and not isinstance(dropped, bool) and dropped > 0:
            turn["history_dropped"] = dropped
        turns.append(turn)
    return turns


def _json_bytes(value: Any) -> int:
    """Its size as the browser stores it (``JSON.stringify``, UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


@dataclass
class Conversation:
    id: str
    turns: list[StoredTurn]
    title: str = UNTITLED
    named: bool = False  # renamed by the person: the title no longer follows the first message
    updated: float = field(default_factory=time.time)  # its turns: the list's order
    changed: float = 0.0  # anything (turns, name, trimming): which tab's copy is newer

    def __post_init__(self) -> None:
        self.changed = max(self.changed, self.updated)

    def saved(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "named": self.named,
            "updated": self.updated,
            "changed": self.changed,
            "turns": self.turns,
        }


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Library:
    """One tab's live list. ``active`` is the conversation on screen; a new one has an id
    before it has a turn, and joins the list with its first turn."""

    budget_bytes: int
    conversations: list[Conversation] = field(default_factory=list)  # last changed first
    # The conversations that left the list, and when: so that another tab's copy does not
    # bring one back (``adopt``).
    deleted: dict[str, float] = field(default_factory=dict)
    restored: bool = False  # from the browser's storage, by the page's load event
    _active: str | None = field(default=None, repr=False)

    @property
    def active(self) -> str:
        """The id of the conversation on screen, drawn when it is first needed: each tab's copy
        of a blank list (``ListHandlers.blank``) draws its own."""
        if self._active is None:
            self._active = _new_id()
        return self._active

    @active.setter
    def active(self, conversation_id: str) -> None:
        self._active = conversation_id

    async def until_restored(self, timeout_s: float = 10.0) -> None:
        """A turn sent before the page's load event has restored the list waits for it, so
        that it lands in the conversation on screen."""
        waited = 0.0
        while not self.restored and waited < timeout_s:
            await asyncio.sleep(0.05)
            waited += 0.05

    def restore(self, saved: Any, turns: list[StoredTurn]) -> list[StoredTurn]:
        """The list as the browser kept it, and the turns to show. The current conversation's
        own storage (``turns``) is the newer copy, if it is this conversation's: the tabs of a
        browser share it, so turns that are another listed conversation's, or that share none
        with the listed copy, are not. When it is empty (a page from before the list existed,
        or storage that was cleared) the list's copy is shown. Entries that do not read are
        left out."""
        saved = saved if isinstance(saved, dict) else {}
        self._read(saved)
        if isinstance(saved.get("active"), str):
            self.active = saved["active"]
        listed = self.find(self.active)
        with contextlib.suppress(ValueError):  # as the list keeps them, to tell a change
            turns = clean_turns(turns) if turns else []
        if turns and not self._holds(listed, turns):
            # Another tab's conversation (tabs share both copies, and the last tab to write
            # each one wins): this one's copy in the list stands.
            turns = []
        if turns:
            self.record(self.active, turns)
        elif listed is not None:
            turns = listed.turns
        self.restored = True
        return turns

    @classmethod
    def stored(cls, saved: Any, budget_bytes: int) -> Library:
        """A stored list (another tab's copy) read on its own; entries that do not read are
        left out."""
        copy = cls(budget_bytes)
        copy._read(saved if isinstance(saved, dict) else {})
        return copy

    def adopt(self, saved: Any) -> bool:
        """Another tab of this browser wrote the list: this tab merges it into its own, and keeps
        its own conversation on screen. Says whether that conversation changed (another turn, a
        new name, or deleted there). ``saved``: the stored list, or a ``Library.stored`` of it.

        The copy may be older than this tab's own changes (it was read when the other tab
        wrote, and a turn may have ended here since), so nothing is replaced wholesale: of each
        conversation the newer copy stands, and one leaves only if it was deleted after its
        last change."""
        before = self.find(self.active)
        before = (before.turns, before.title) if before else None
        other = saved if isinstance(saved, Library) else Library.stored(saved, self.budget_bytes)
        for conversation_id, when in other.deleted.items():
            self.deleted[conversation_id] = max(when, self.deleted.get(conversation_id, when))
        newest = {c.id: c for c in self.conversations}
        for theirs in other.conversations:
            ours = newest.get(theirs.id)
            if ours is None or theirs.changed > ours.changed:
                newest[theirs.id] = theirs
        kept = [c for c in newest.values() if self.deleted.get(c.id, -1.0) < c.changed]
        self.conversations = sorted(kept, key=lambda c: c.updated, reverse=True)
        after = self.find(self.active)
        return before != ((after.turns, after.title) if after else None)

    def holds_more_than(self, other: Library) -> bool:
        """Whether this list holds something that ``other`` (another tab's copy, read with
        ``Library.stored``) lacks: a conversation, a newer copy of one, or a deletion that this
        list would write. Then this tab writes its merged list back: a tab that wrote a list
        older than another's must not leave storage behind."""
        theirs = {c.id: c.changed for c in other.conversations}
        if any(theirs.get(c.id, -1.0) < c.changed for c in self.conversations):
            return True
        kept = self._newest_deletions()
        return any(when > other.deleted.get(gone, -1.0) for gone, when in kept.items())

    def _read(self, saved: dict[str, Any]) -> None:
        """The conversations of a stored list, and its deletions; entries that do not read are
        left out."""
        deleted = saved.get("deleted")
        for conversation_id, when in (deleted if isinstance(deleted, dict) else {}).items():
            with contextlib.suppress(TypeError, ValueError):
                self.deleted[str(conversation_id)] = float(when)
        for raw in saved.get("conversations") or []:
            try:
                conversation = Conversation(
                    id=str(raw["id"]),
                    turns=clean_turns(raw["turns"]),
                    title=str(raw.get("title") or UNTITLED)[:MAX_TITLE_CHARS],
                    named=raw.get("named") is True,
                    updated=float(raw.get("updated") or 0),
                    changed=float(raw.get("changed") or 0),
                )
            except (KeyError, TypeError, ValueError):
                continue
            if self.find(conversation.id) is None:
                self.conversations.append(conversation)

    def _holds(self, listed: Conversation | None, turns: list[StoredTurn]) -> bool:
        """Whether ``turns`` are a copy of ``listed`` (None: of a conversation not in the list):
        it shares the most of them. Two conversations can begin alike."""

        def shared(conversation: Conversation) -> int:
            return sum(turn in conversation.turns for turn in turns)

        others = max((shared(c) for c in self.conversations if c is not listed), default=0)
        if listed is None:
            return others == 0
        return shared(listed) >= max(others, 1)

    def find(self, conversation_id: str) -> Conversation | None:
        return next((c for c in self.conversations if c.id == conversation_id), None)

    def record(self, conversation_id: str, turns: list[StoredTurn]) -> None:
        """A conversation's turns changed: it moves to the top. With no turns it leaves."""
        conversation = self.find(conversation_id)
        if conversation is not None:
            if conversation.turns == turns:
                return  # the same: it keeps its place
            self.conversations.remove(conversation)
        if not turns:
            if conversation is not None:
                self._forget(conversation)
            return
        if conversation is None:
            conversation = Conversation(conversation_id, list(turns))
        conversation.turns = list(turns)
        conversation.updated = conversation.changed = self._now(conversation)
        self.deleted.pop(conversation_id, None)
        if not conversation.named:
            conversation.title = title_for(turns)
        self.conversations.insert(0, conversation)

    def _now(self, *also: Conversation) -> float:
        """The time of a change: later than every change this list knows (and ``also``'s), so
        that the newer copy wins even against another machine's clock."""
        known = [c.changed for c in [*self.conversations, *also]] + list(self.deleted.values())
        return max([time.time(), *(when + 1e-3 for when in known)])

    def _forget(self, conversation: Conversation) -> None:
        """It left the list, later than its last change: its copies in other tabs go too."""
        self.deleted[conversation.id] = self._now(conversation)

    def turns_on_screen(self) -> list[StoredTurn]:
        conversation = self.find(self.active)
        return list(conversation.turns) if conversation else []

    def start_new(self) -> None:
        self.active = _new_id()

    def open(self, conversation_id: str) -> list[StoredTurn]:
        conversation = self.find(conversation_id)
        if conversation is None:
            raise ConversationError("That conversation is no longer in this browser's list.")
        self.active = conversation_id
        return conversation.turns

    def rename(self, title: str) -> None:
        conversation = self.find(self.active)
        if conversation is None:
            raise ConversationError("Send a message first: a new conversation has no name yet.")
        title = " ".join((title or "").split())
        if not title:
            raise ConversationError("A conversation's name cannot be empty.")
        conversation.title, conversation.named = title[:MAX_TITLE_CHARS], True
        conversation.changed = self._now()

    def delete(self) -> None:
        """The conversation on screen leaves the list; a new one takes its place."""
        self.record(self.active, [])
        self.start_new()

    def add(self, title: str, turns: list[StoredTurn]) -> None:
        """An imported conversation, opened."""
        self.start_new()
        self.record(self.active, turns)
        if title and title != title_for(turns):
            self.rename(title)

    def fit(self) -> list[str]:
        """Keep the stored list under its budget: the oldest other conversations go first, then
        the oldest turns of the one on screen (its own storage keeps them until it changes).
        Says what went."""
        went: list[str] = []
        while self.size() > self.budget_bytes:
            others = [c for c in self.conversations if c.id != self.active]
            if others:
                oldest = others[-1]  # the list is kept in order of last change
                self.conversations.remove(oldest)
                self._forget(oldest)
                went.append(f"“{oldest.title}”")
                continue
            current = self.find(self.active)
            if current is None or len(current.turns) <= 1:
                break  # one turn is always kept: the budget is far above a message's size
            current.turns, current.changed = current.turns[1:], self._now()
            went.append(f"the oldest exchange of “{current.title}”")
        return went

    def size(self) -> int:
        return _json_bytes(self.saved())

    def saved(self) -> dict[str, Any]:
        """What the browser keeps."""
        return {
            "version": LIST_VERSION,
            "active": self.active,
            "conversations": [c.saved() for c in self.conversations],
            "deleted": self._newest_deletions(),
        }

    def _newest_deletions(self) -> dict[str, float]:
        """The deletions the browser keeps: the newest ``MAX_DELETED``."""
        return dict(sorted(self.deleted.items(), key=lambda item: item[1])[-MAX_DELETED:])

    def choices(self) -> list[tuple[str, str]]:
        return [(c.title, c.id) for c in self.conversations]

    def title(self) -> str:
        conversation = self.find(self.active)
        return conversation.title if conversation else ""
