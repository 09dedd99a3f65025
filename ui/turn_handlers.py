"""The page's handlers for one conversation's turns: send, Retry, Edit, Stop, Undo and Clear.

Stop does not cancel the streaming event from outside: it asks the turn to end (a per-tab
``gr.State`` holds the running turns' stop signals), and the turn itself commits what was
already written, marked as stopped. One writer per turn: a late stream update can never
overwrite Stop's result, and a turn that had just finished is never rolled back.

A turn belongs to the conversation that was on screen when it began. If the person opens
another one meanwhile, the turn ends as if stopped, is kept in its own conversation, and leaves
the screen alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from serving.events import DeltaEvent, DoneEvent, StartEvent, StoredTurn, stored_turn
from ui.client import ApiError, stream_turn
from ui.conversations import Library, clean_turns
from ui.list_handlers import listing
from ui.reply_stream import Halt, halt_all, redrawn, until_halted
from ui.turns import (
    conversation_language,
    message_text,
    notice_for,
    to_history_en,
    to_messages,
    turn_at,
)

# What each turn handler updates: the chat window, the stored turns, the text box, the notice.
UNCHANGED = (gr.skip(), gr.skip(), gr.skip(), gr.skip())


def with_list(update: tuple, library: Library | None) -> tuple:
    """The page's updates also carry the list, whenever the stored turns change: the list
    then moves with the turn itself. (The API's have no list.)"""
    if library is None:
        return update
    return (*update, listing(library) if isinstance(update[1], list) else gr.skip())


def _index(data: gr.EventData) -> int:
    index = data.index
    return index[0] if isinstance(index, tuple | list) else index


class TurnHandlers:
    """Bound to the API they talk to. ``library`` is the tab's live list of conversations:
    None for a client of the page's API, which keeps its own turns."""

    def __init__(self, api_url: str, api_token: str | None = None) -> None:
        self.api_url = api_url
        self.api_token = api_token

    async def run_turn(
        self,
        message: str,
        turns: list[StoredTurn],
        box_after: Any,
        running: set[Halt],
        library: Library | None,
    ) -> AsyncIterator[tuple]:
        """Stream one turn: (chat window, stored turns, text box, notice)."""
        if library is not None:
            await library.until_restored()
        conversation = library.active if library else None

        def on_screen() -> bool:
            return library is None or library.active == conversation

        def commit(kept: list[StoredTurn], box: Any) -> tuple:
            if library is not None:
                library.record(conversation, kept)
            return (to_messages(kept), kept, box, notice_for(kept)) if on_screen() else UNCHANGED

        def give_back(kept: list[StoredTurn]) -> tuple:
            """The turn ends without a reply: its message goes back to the text box, even when
            another conversation is on screen (the page has one box, and nothing typed is lost:
            New pressed as the message was sent races it in Gradio's queue)."""
            update = commit(kept, message)
            return update if on_screen() else (gr.skip(), gr.skip(), message, gr.skip())

        pending: StoredTurn = {
            "user": message,
            "assistant": "",
            "user_en": message,
            "assistant_en": "",
            "language": "en",
        }
        shown = to_messages(turns) + [
            {"role": "user", "content": message},
            {"role": "assistant", "content": ""},
        ]
        halt = Halt()
        running.add(halt)
        try:
            yield shown, turns, box_after, notice_for(turns)
            stream = stream_turn(
                self.api_url,
                message,
                to_history_en(turns),
                self.api_token,
                conversation_language(turns),
            )
            events = until_halted(redrawn(stream), halt)
            async for event in events:
                if isinstance(event, StartEvent):
                    pending.update(
                        user_en=event.message_en,
                        language=event.language,
                        history_dropped=event.history_dropped,
                        heard=event.heard,
                        reason=event.reason,
                    )
                    yield shown, gr.skip(), gr.skip(), notice_for([pending])
                elif isinstance(event, DeltaEvent):
                    pending["assistant"] += event.text
                    pending["assistant_en"] += (
                        event.text_en or "" if pending["language"] != "en" else event.text
                    )
                    shown[-1] = {"role": "assistant", "content": pending["assistant"]}
                    yield (shown, *UNCHANGED[1:]) if on_screen() else UNCHANGED
                elif isinstance(event, DoneEvent):
                    said = {"heard": pending.get("heard"), "reason": pending.get("reason")}
                    yield commit([*turns, {**stored_turn(message, event), **said}], box_after)
                    return
            if not halt.keep:  # Undo, Clear or Delete: their own result stands
                return
            if pending["assistant"].strip():  # Stop: keep what was written, marked as stopped
                yield commit([*turns, {**pending, "stopped": True}], box_after)
            else:  # nothing written yet: the message goes back to the box
                yield give_back(turns)
        except ApiError as error:  # the page's one edge: a toast, and the message back in the box
            gr.Warning(error.message)
            yield give_back(turns)
        finally:
            running.discard(halt)

    async def send_api(
        self, message: str, running: set[Halt], turns: list[StoredTurn] | None = None
    ):
        """The page's API (``/chat``): a message, and the turns so far (none: a new conversation;
        gradio_client may leave them out). A client keeps its own turns: no list. Turns that
        are not what ``/chat`` returned are refused, saying what to send, before anything runs;
        those that are go on as they came, every field kept."""
        if turns:
            try:
                clean_turns(turns)
            except ValueError as error:
                raise gr.Error(
                    f"These turns cannot continue a conversation: {error}. Send the turns that "
                    "the last /chat call returned (its second value), or none to start a new "
                    "conversation."
                ) from None
        async for update in self.send(message, running, None, turns):
            yield update

    async def send(
        self,
        message: str,
        running: set[Halt],
        library: Library | None,
        turns: list[StoredTurn] | None,
    ):
        """Send a message: the page's text box, or the API."""
        if library is not None:  # the page: the list knows the conversation on screen, even
            await library.until_restored()  # when the browser has not yet drawn a switch to it
            turns = library.turns_on_screen()
        turns = list(turns or [])
        if not (message or "").strip():
            gr.Warning("Type a message first.")
            yield with_list((to_messages(turns), turns, message, notice_for(turns)), library)
            return
        async for update in self.run_turn(message, turns, "", running, library):
            yield with_list(update, library)

    async def retry(
        self,
        turns: list[StoredTurn] | None,
        running: set[Halt],
        library: Library | None,
        data: gr.RetryData,
    ):
        """Ask again: the turn's reply is replaced by a new one."""
        turns = list(turns or [])
        if not turns:
            return
        index = turn_at(turns, _index(data))
        message = turns[index]["user"]
        async for update in self.run_turn(message, turns[:index], gr.skip(), running, library):
            yield with_list(update, library)

    async def edit(
        self,
        turns: list[StoredTurn] | None,
        running: set[Halt],
        library: Library | None,
        data: gr.EditData,
    ):
        """A past message, rewritten: the conversation continues from there."""
        turns = list(turns or [])
        index = turn_at(turns, _index(data)) if turns else 0
        message = message_text(data.value).strip()
        if not message:
            gr.Warning("An edited message cannot be empty.")
            yield with_list((to_messages(turns), turns, gr.skip(), notice_for(turns)), library)
            return
        async for update in self.run_turn(message, turns[:index], gr.skip(), running, library):
            yield with_list(update, library)

    async def stop(self, running: set[Halt]) -> None:
        """The running turn keeps what it has written, marked as stopped, and ends its request."""
        halt_all(running, keep=True)

    async def undo(
        self,
        turns: list[StoredTurn] | None,
        running: set[Halt],
        library: Library | None,
        data: gr.UndoData,
    ):
        """Take the last exchange back; its message returns to the text box."""
        halt_all(running, keep=False)
        turns = list(turns or [])
        if not turns:
            return with_list(([], [], gr.skip(), ""), library)
        index = turn_at(turns, _index(data))
        kept = turns[:index]
        if library is not None:
            library.record(library.active, kept)
        return with_list((to_messages(kept), kept, turns[index]["user"], notice_for(kept)), library)

    async def clear(self, running: set[Halt], library: Library | None) -> tuple:
        """The conversation on screen is deleted (from the list too); a new one begins."""
        halt_all(running, keep=False)
        if library is not None:
            library.delete()
        return with_list(([], [], ""), library)
