"""The chat page: a pure Gradio builder that also runs without Serve.

The conversation lives in the browser (``gr.BrowserState``, i.e. localStorage): each turn keeps
what the person saw and, for French turns, what the model saw in English, so nothing is
translated twice and a reload keeps everything.

Stop does not cancel the streaming event from outside: it asks the turn to end (a per-tab
``gr.State`` holds the running turns' stop signals), and the turn itself commits what was
already written, marked as stopped. One writer per turn: a late stream update can never
overwrite Stop's result, and a turn that had just finished is never rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from serving.pacing import paced
from ui import share
from ui.client import ApiError, api_ready, stream_turn

# user, assistant, user_en, assistant_en, language; history_dropped (int), stopped (bool)
Turn = dict[str, Any]

EXAMPLES = [
    "What should I cook tonight with rice and vegetables?",
    "Quel est le meilleur moment pour visiter Paris ?",
    "Give me three tips to sleep better.",
    "Peux-tu me conseiller un bon livre ?",
]

ENGLISH_ORIGINAL = "English original"
LOADING = (
    "⏳ **Loading the models.** You can type already: replies start once they are ready "
    "(the very first start converts the weights, a few minutes on a small CPU)."
)
# The share handler returns "#shared=..."; the browser puts its own address in front.
COMPLETE_LINK = (
    "(link) => link && link.startsWith('#') ? "
    "window.location.origin + window.location.pathname + link : link"
)
# Opening another #shared= link in the same tab changes only the fragment: load it afresh.
HEAD = "<script>window.addEventListener('hashchange', () => window.location.reload());</script>"
STOPPED_MARK = "\n\n*(stopped)*"


def to_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    """What the chat window shows: the conversation in the person's own language.

    A French turn also gets a closed "English original" fold with what the model read and wrote.
    """
    messages: list[dict[str, Any]] = []
    for turn in turns:
        reply = turn["assistant"] + (STOPPED_MARK if turn.get("stopped") else "")
        messages.append({"role": "user", "content": turn["user"]})
        messages.append({"role": "assistant", "content": reply})
        if turn.get("language") == "fr":
            english = f"**You:** {turn['user_en']}\n\n**Assistant:** {turn['assistant_en']}"
            messages.append(
                {
                    "role": "assistant",
                    "content": english,
                    "metadata": {"title": ENGLISH_ORIGINAL, "status": "done"},
                }
            )
    return messages


def turn_at(turns: list[Turn], message_index: int) -> int:
    """The turn that the chat window's message ``message_index`` belongs to."""
    for index in range(len(turns)):
        if message_index < len(to_messages(turns[: index + 1])):
            return index
    return len(turns) - 1


def to_history_en(turns: list[Turn]) -> list[dict[str, str]]:
    """What the model sees: the English side of every turn."""
    history: list[dict[str, str]] = []
    for turn in turns:
        history.append({"role": "user", "content": turn["user_en"]})
        history.append({"role": "assistant", "content": turn["assistant_en"]})
    return history


def notice_for(turns: list[Turn]) -> str:
    """Says when the model no longer sees the start of the conversation."""
    dropped = turns[-1].get("history_dropped", 0) if turns else 0
    if not dropped:
        return ""
    return (
        f"ℹ️ This conversation is longer than the model can read: its first {dropped} messages "
        "are no longer in the model's view. Clear the conversation to start afresh."
    )


def _text(value: Any) -> str:
    """A message's text, whether Gradio hands it over as a string or as content parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _text(value.get("text", value.get("content", "")))
    if isinstance(value, list):
        return "".join(_text(part) for part in value)
    return str(value or "")


@dataclass(eq=False)
class Halt:
    """How a running turn is asked to end: ``keep`` its partial reply (Stop) or not (Clear/Undo)."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    keep: bool = True

    def __call__(self, keep: bool) -> None:
        self.keep = keep
        self.requested.set()


# The page redraws the reply at most this often: a fast model sends 60 deltas a second, and
# each redraw renders the whole reply again in the browser (and diffs it in the UI replica).
REDRAW_INTERVAL_S = 0.1


def join_deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive deltas as one (their texts and English texts joined); other events as they
    are, in order."""
    joined: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "delta" and joined and joined[-1]["type"] == "delta":
            last = dict(joined[-1])
            last["text"] += event["text"]
            if "text_en" in event:
                last["text_en"] = last.get("text_en", "") + event["text_en"]
            joined[-1] = last
        else:
            joined.append(event)
    return joined


async def until_halted(
    stream: AsyncIterator[dict[str, Any]], halt: Halt
) -> AsyncIterator[dict[str, Any]]:
    """The stream's events until it ends or ``halt`` is requested; the stream is closed either way.

    Closing the stream closes its WebSocket, which cancels the request in the router.
    """
    halted = asyncio.ensure_future(halt.requested.wait())
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(stream))
            await asyncio.wait({step, halted}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return  # halted: the finally below ends the pending read
            try:
                event = step.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        # Also when this turn itself is cancelled (the tab closed): end the pending read first,
        # since a stream cannot be closed while a read is running in it.
        halted.cancel()
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait({step})
        await stream.aclose()


def _halt_all(running: set[Halt], keep: bool) -> None:
    for halt in list(running):
        halt(keep)


def _index(data: gr.EventData) -> int:
    index = data.index
    return index[0] if isinstance(index, tuple | list) else index


def build_demo(
    api_url: str,
    title: str = "Polyglot chat",
    storage_secret: str | None = None,
    api_token: str | None = None,
) -> gr.Blocks:
    async def run_turn(
        message: str, turns: list[Turn], box_after: Any, running: set[Halt]
    ) -> AsyncIterator[tuple]:
        """Stream one turn: (chat window, stored turns, text box, notice).

        ``running`` is this tab's set of turns in progress; Stop, Undo and Clear halt them.
        """
        pending: Turn = {
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
            stream = stream_turn(api_url, message, to_history_en(turns), api_token)
            events = until_halted(paced(stream, REDRAW_INTERVAL_S, join_deltas), halt)
            async for event in events:
                if event["type"] == "start":
                    pending.update(
                        user_en=event["message_en"],
                        language=event["language"],
                        history_dropped=event.get("history_dropped", 0),
                    )
                    yield shown, gr.skip(), gr.skip(), notice_for([pending])
                elif event["type"] == "delta":
                    pending["assistant"] += event["text"]
                    pending["assistant_en"] += (
                        event.get("text_en", "") if pending["language"] == "fr" else event["text"]
                    )
                    shown[-1] = {"role": "assistant", "content": pending["assistant"]}
                    yield shown, gr.skip(), gr.skip(), gr.skip()
                elif event["type"] == "done":
                    pending.update(assistant=event["reply"], assistant_en=event["reply_en"])
                    turns = [*turns, pending]
                    yield to_messages(turns), turns, box_after, notice_for(turns)
                    return
            if not halt.keep:  # Undo or Clear: their own result stands
                return
            if pending["assistant"].strip():  # Stop: keep what was written, marked as stopped
                turns = [*turns, {**pending, "stopped": True}]
                yield to_messages(turns), turns, box_after, notice_for(turns)
            else:  # nothing written yet: the message goes back to the box
                yield to_messages(turns), turns, message, notice_for(turns)
        except ApiError as error:  # the page's one edge: a toast, and the message back in the box
            gr.Warning(error.message)
            yield to_messages(turns), turns, message, notice_for(turns)
        finally:
            running.discard(halt)

    async def send(message: str, running: set[Halt], turns: list[Turn] | None = None):
        """The page's API (``/chat``): a message, and the turns so far (none: a new conversation;
        gradio_client may leave them out)."""
        turns = list(turns or [])
        if not (message or "").strip():
            gr.Warning("Type a message first.")
            yield to_messages(turns), turns, message, notice_for(turns)
            return
        async for update in run_turn(message, turns, "", running):
            yield update

    async def retry(turns: list[Turn] | None, running: set[Halt], data: gr.RetryData):
        """Ask again: the turn's reply is replaced by a new one."""
        turns = list(turns or [])
        if not turns:
            return
        index = turn_at(turns, _index(data))
        async for update in run_turn(turns[index]["user"], turns[:index], gr.skip(), running):
            yield update

    async def edit(turns: list[Turn] | None, running: set[Halt], data: gr.EditData):
        """A past message, rewritten: the conversation continues from there."""
        turns = list(turns or [])
        index = turn_at(turns, _index(data)) if turns else 0
        message = _text(data.value).strip()
        if not message:
            gr.Warning("An edited message cannot be empty.")
            yield to_messages(turns), turns, gr.skip(), notice_for(turns)
            return
        async for update in run_turn(message, turns[:index], gr.skip(), running):
            yield update

    async def stop(running: set[Halt]) -> None:
        """The running turn keeps what it has written, marked as stopped, and ends its request."""
        _halt_all(running, keep=True)

    async def undo(turns: list[Turn] | None, running: set[Halt], data: gr.UndoData):
        """Take the last exchange back; its message returns to the text box."""
        _halt_all(running, keep=False)
        turns = list(turns or [])
        if not turns:
            return [], [], gr.skip(), ""
        index = turn_at(turns, _index(data))
        kept = turns[:index]
        return to_messages(kept), kept, turns[index]["user"], notice_for(kept)

    async def clear(running: set[Halt]) -> tuple:
        _halt_all(running, keep=False)
        return [], [], ""

    def share_link(turns: list[Turn] | None):
        """A link that carries the conversation itself (the page completes it with its own URL)."""
        if not turns:
            gr.Warning("There is nothing to share yet.")
            return gr.skip()
        try:
            token = share.encode(turns)
        except share.ShareError as error:
            gr.Warning(error.message)
            return gr.skip()
        return gr.Textbox(value=f"#{share.FRAGMENT_KEY}={token}", visible=True)

    def open_shared(fragment: str):
        """A ``#shared=`` link opens read-only; the reader's own conversation is not touched."""
        token = share.token_in(fragment or "")
        if token is None:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            turns = share.decode(token)
        except share.ShareError as error:
            gr.Warning(error.message)
            return gr.skip(), gr.skip(), gr.skip()
        return gr.Column(visible=True), to_messages(turns), gr.Column(visible=False)

    async def readiness():
        """Says "loading models" until every deployment is healthy, then stops asking."""
        if await api_ready(api_url):
            return "", gr.Timer(active=False)
        return LOADING, gr.skip()

    with gr.Blocks(title=title, fill_height=True) as demo:
        gr.Markdown(f"## {title}\nChat in English or French: replies come in your language.")
        status = gr.Markdown("", elem_id="status")
        turns_state = gr.BrowserState([], storage_key="polyglot-chat-turns", secret=storage_secret)
        running = gr.State(set())  # this tab's turns in progress (server memory)
        fragment = gr.Textbox(visible=False)
        with gr.Column(visible=False, elem_id="shared-view") as shared_view:
            gr.Markdown("### A conversation shared with you (read-only)")
            shared_chatbot = gr.Chatbot(label="Shared conversation", height=480, elem_id="shared")
            gr.Button("Start your own conversation", link="./", elem_id="own")
        with gr.Column(elem_id="own-view") as own_view:
            chatbot = gr.Chatbot(
                label="Conversation",
                height=480,
                elem_id="chatbot",
                buttons=["copy"],
                editable="user",
            )
            notice = gr.Markdown("", elem_id="notice")
            with gr.Row():
                box = gr.Textbox(
                    placeholder="Écrivez en français or write in English…",
                    show_label=False,
                    scale=6,
                    elem_id="message",
                    autofocus=True,
                )
                small = dict(scale=1, min_width=80)
                send_button = gr.Button("Send", variant="primary", elem_id="send", **small)
                stop_button = gr.Button("Stop", elem_id="stop", **small)
                clear_button = gr.Button("Clear", elem_id="clear", **small)
                share_button = gr.Button("Share", elem_id="share", **small)
            link = gr.Textbox(
                label="Link to this conversation: it travels inside the link, read-only, "
                "and nothing is stored on the server",
                visible=False,
                buttons=["copy"],
                elem_id="share-link",
            )
            gr.Examples(EXAMPLES, inputs=box, label="Try")

        outputs = [chatbot, turns_state, box, notice]
        # concurrency_limit=None: Serve's max_ongoing/max_queued_requests do the backpressure.
        streaming = dict(outputs=outputs, concurrency_limit=None)
        # The turns come last, so that gradio_client may leave them out (None: no history).
        send_button.click(send, [box, running, turns_state], api_name="chat", **streaming)
        box.submit(send, [box, running, turns_state], api_name=False, **streaming)
        chatbot.retry(retry, [turns_state, running], api_name=False, **streaming)
        chatbot.edit(edit, [turns_state, running], api_name=False, **streaming)
        # Stop, Undo and Clear halt the running turn rather than cancel its event: see the top.
        quick = dict(api_name=False, concurrency_limit=None)
        stop_button.click(stop, running, None, **quick)
        chatbot.undo(undo, [turns_state, running], outputs, **quick)
        cleared = [chatbot, turns_state, notice]
        clear_button.click(clear, running, cleared, **quick)
        chatbot.clear(clear, running, cleared, **quick)  # its own trash icon
        share_button.click(share_link, turns_state, link, **quick).then(
            None, link, link, js=COMPLETE_LINK, api_name=False
        )
        demo.load(
            lambda turns: (to_messages(turns or []), notice_for(turns or [])),
            inputs=turns_state,
            outputs=[chatbot, notice],
            api_name=False,
        )
        demo.load(
            open_shared,
            fragment,
            [shared_view, shared_chatbot, own_view],
            js="() => window.location.hash",
            api_name=False,
        )
        timer = gr.Timer(3.0)
        demo.load(readiness, None, [status, timer], api_name=False)
        timer.tick(readiness, None, [status, timer], api_name=False)
    return demo
