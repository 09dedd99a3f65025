"""The chat page: a pure Gradio builder that also runs without Serve.

The conversations live in the browser's localStorage: the one on screen as its stored turns
(``gr.BrowserState``, ``ui/turns.py``), and the list of all of them, sealed by the server
(``ui/conversations.py``). The handlers are in ``ui/turn_handlers.py`` and
``ui/list_handlers.py``; this module lays the page out and wires them.
"""

from __future__ import annotations

import secrets

import gradio as gr

from serving.events import StoredTurn
from serving.languages import language
from ui import share
from ui.client import api_ready
from ui.list_handlers import (
    DOWNLOAD,
    HEAR_OTHER_TABS,
    LIST_CHANGED_ID,
    PICK_FILE,
    READ_LIST,
    WRITE_LIST,
    ListHandlers,
)
from ui.turn_handlers import TurnHandlers
from ui.turns import to_messages

ENGLISH_EXAMPLES = [
    "What should I cook tonight with rice and vegetables?",
    "Give me three tips to sleep better.",
]


def spoken(languages: list[str]) -> tuple[str, str, list[str]]:
    """What the page says of the languages it speaks (English and ``languages``, from their
    files in serving/languages/): the headline, the text box's placeholder, the examples."""
    specs = [language(code) for code in languages]
    names = " or ".join(["English", *(spec.name for spec in specs)][-2:])
    names = ", ".join(["English", *(spec.name for spec in specs)][:-2] + [names])
    if not specs:
        return "Chat in English.", "Write in English…", list(ENGLISH_EXAMPLES)
    headline = f"Chat in {names}: replies come in your language."
    placeholder = " · ".join(spec.greeting for spec in specs) + " or write in English…"
    examples = [example for spec in specs for example in spec.examples_for_page]
    return headline, placeholder, ENGLISH_EXAMPLES + examples


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
DEFAULT_STORAGE_BYTES = 1536 * 1024

# Accessibility (axe-core in tests/test_accessibility.py). White on the default orange-500 is
# 2.8:1; on orange-700 it is 5.2:1 (WCAG AA asks 4.5:1).
THEME = gr.themes.Default().set(
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover_dark="*primary_800",
    button_primary_border_color="*primary_700",
    button_primary_border_color_dark="*primary_700",
)
# Gradio's fold ("English original") nests a nameless arrow button inside its role=button
# title: take the arrow out of focus and of the accessibility tree, and say whether it is open.
# While a reply streams, the chat log says so (aria-busy, for screen readers), and it counts the
# replies that started and ended (data-started/data-ended) so that a program can tell when the
# page is done: Gradio shows nothing of a running event once its progress overlay is hidden.
REPLY_STARTS = """() => {
  const log = document.querySelector('#chatbot');
  log.dataset.started = Number(log.dataset.started || 0) + 1;
  log.setAttribute('aria-busy', 'true');
}"""
REPLY_ENDS = """() => {
  const log = document.querySelector('#chatbot');
  log.dataset.ended = Number(log.dataset.ended || 0) + 1;
  if (Number(log.dataset.ended) >= Number(log.dataset.started)) {
    log.setAttribute('aria-busy', 'false');
  }
}"""
FOLD_JS = """() => {
  const fix = () => document.querySelectorAll('.thought-group .title').forEach((title) => {
    title.setAttribute('aria-expanded', title.classList.contains('expanded'));
    title.querySelectorAll('.arrow').forEach((arrow) => { arrow.inert = true; });
  });
  new MutationObserver(fix).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
}"""


def share_link(turns: list[StoredTurn] | None):
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
    """A ``#shared=`` link opens read-only; the reader's own conversations are not touched."""
    token = share.token_in(fragment or "")
    if token is None:
        return gr.skip(), gr.skip(), gr.skip()
    try:
        turns = share.decode(token)
    except share.ShareError as error:
        gr.Warning(error.message)
        return gr.skip(), gr.skip(), gr.skip()
    return gr.Column(visible=True), to_messages(turns), gr.Row(visible=False)


def build_demo(
    api_url: str,
    title: str = "Polyglot chat",
    storage_secret: str | None = None,
    api_token: str | None = None,
    storage_bytes: int = DEFAULT_STORAGE_BYTES,
    languages: list[str] | None = None,
) -> gr.Blocks:
    """``storage_bytes``: the budget of the list of conversations in the browser's storage;
    ``languages``: the ones it speaks besides English (default French)."""
    headline, placeholder, examples = spoken(["fr"] if languages is None else languages)
    turn = TurnHandlers(api_url, api_token)
    storage_secret = storage_secret or secrets.token_urlsafe(32)
    lists = ListHandlers(storage_bytes, storage_secret)

    async def readiness():
        """Says "loading models" until every deployment is healthy, then stops asking."""
        if await api_ready(api_url):
            return "", gr.Timer(active=False)
        return LOADING, gr.skip()

    with gr.Blocks(title=title, fill_height=True) as demo:
        gr.Markdown(f"# {title}\n{headline}")
        status = gr.Markdown("", elem_id="status")
        turns_state = gr.BrowserState([], storage_key="polyglot-chat-turns", secret=storage_secret)
        sealed_list = gr.Textbox(visible=False)  # the list, sealed, on its way to localStorage
        running = gr.State(set())  # this tab's turns in progress (server memory)
        # This tab's live list (server memory): each tab gets its own copy (see ``blank``).
        library = gr.State(lists.blank())
        fragment = gr.Textbox(visible=False)
        download = gr.Textbox(visible=False)  # an exported file, on its way to the browser
        upload = gr.Textbox(visible=False)  # an imported file's text, read by the browser
        api_button = gr.Button(visible=False)  # never on screen: the /chat API's own event
        # In the page but never shown: pressed when another tab writes the list.
        list_changed = gr.Button(visible="hidden", elem_id=LIST_CHANGED_ID)
        with gr.Column(visible=False, elem_id="shared-view") as shared_view:
            gr.Markdown("### A conversation shared with you (read-only)")
            shared_chatbot = gr.Chatbot(
                label="Shared conversation",
                height=480,
                elem_id="shared",
                buttons=["copy", "copy_all"],  # the default share button has no name
            )
            gr.Button("Start your own conversation", link="./", elem_id="own")
        with gr.Row(elem_id="own-view", equal_height=False) as own_view:
            with gr.Column(scale=1, min_width=220, elem_id="list-panel"):
                new_button = gr.Button("New conversation", elem_id="new-conversation")
                choices = gr.Radio(
                    [], label="Conversations", elem_id="conversations", interactive=True
                )
                name = gr.Textbox(label="Name", elem_id="conversation-name", max_lines=1)
                with gr.Row():
                    rename_button = gr.Button("Rename", size="sm", elem_id="rename")
                    delete_button = gr.Button("Delete", size="sm", elem_id="delete")
                with gr.Row():
                    markdown_button = gr.Button("Export Markdown", size="sm", elem_id="export-md")
                    json_button = gr.Button("Export JSON", size="sm", elem_id="export-json")
                import_button = gr.Button("Import JSON", size="sm", elem_id="import")
                list_notice = gr.Markdown("", elem_id="list-notice")
            with gr.Column(scale=4):
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
                        placeholder=placeholder,
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
                gr.Examples(examples, inputs=box, label="Try")

        # Instant events draw no progress overlay: over an empty output it is an unnamed,
        # scrollable region to a screen reader.
        quick = dict(api_name=False, concurrency_limit=None, show_progress="hidden")
        persisted = [sealed_list, choices, name, list_notice]

        def then_persist(event):
            """After anything that changes the list, the browser keeps a copy of it (the stored
            one goes along: see ``ListHandlers.persist``)."""
            sealed = event.then(
                lists.persist, [sealed_list, library], persisted, js=READ_LIST, **quick
            )
            written = [sealed_list, list_notice]
            return sealed.then(None, written, list_notice, js=WRITE_LIST, **quick)

        def replying(trigger, handler, inputs) -> None:
            """A turn's event: the chat log is busy from the trigger to the list's write."""
            trigger(None, js=REPLY_STARTS, **quick)
            then_persist(trigger(handler, inputs, **listed)).then(None, js=REPLY_ENDS, **quick)

        outputs = [chatbot, turns_state, box, notice]
        # concurrency_limit=None: Serve's max_ongoing/max_queued_requests do the backpressure.
        streaming = dict(outputs=outputs, concurrency_limit=None)
        # The page's API has its own event, with no list: the turns come last, so that
        # gradio_client may leave them out (None: no history); gr.State is not part of the API.
        api_button.click(turn.send_api, [box, running, turns_state], api_name="chat", **streaming)
        # The page's own turns also update the list of conversations.
        listed = dict(outputs=[*outputs, choices], concurrency_limit=None, api_name=False)
        sent = [box, running, library, turns_state]
        replying(send_button.click, turn.send, sent)
        replying(box.submit, turn.send, sent)
        again = [turns_state, running, library]
        replying(chatbot.retry, turn.retry, again)
        replying(chatbot.edit, turn.edit, again)
        # Stop, Undo and Clear halt the running turn rather than cancel its event: see
        # ui/turn_handlers.py.
        stop_button.click(turn.stop, running, None, **quick)
        then_persist(chatbot.undo(turn.undo, again, [*outputs, choices], **quick))
        cleared = [chatbot, turns_state, notice, choices]
        then_persist(clear_button.click(turn.clear, [running, library], cleared, **quick))
        then_persist(chatbot.clear(turn.clear, [running, library], cleared, **quick))
        share_button.click(share_link, turns_state, link, **quick).then(
            None, link, link, js=COMPLETE_LINK, api_name=False
        )

        shown = [chatbot, turns_state, notice]
        then_persist(new_button.click(lists.start_new, [library, running], shown, **quick))
        then_persist(choices.input(lists.open, [choices, library, running], shown, **quick))
        for renamed in (rename_button.click, name.submit):
            then_persist(renamed(lists.rename, [name, library], None, **quick))
        then_persist(delete_button.click(lists.delete, [library, running], shown, **quick))
        for button, export in (
            (markdown_button, lists.export_markdown),
            (json_button, lists.export_json),
        ):
            button.click(export, [library, turns_state], download, **quick).then(
                None, download, None, js=DOWNLOAD, api_name=False
            )
        imported = import_button.click(None, None, upload, js=PICK_FILE, api_name=False)
        then_persist(
            imported.then(lists.import_file, [upload, library, running], [*shown, upload], **quick)
        )

        opened = [sealed_list, turns_state, library]
        then_persist(demo.load(lists.load, opened, [*shown, choices, name], js=READ_LIST, **quick))
        # Tabs share the browser's storage: each merges the list that another one wrote, so
        # that its next write does not drop what the other added; it writes the merge back
        # only if the other's copy lacked something of its own.
        demo.load(None, js=HEAR_OTHER_TABS, **quick)
        taken_up = [sealed_list, choices, name, *shown]
        list_changed.click(
            lists.take_up, [sealed_list, library, running], taken_up, js=READ_LIST, **quick
        ).then(None, [sealed_list, list_notice], list_notice, js=WRITE_LIST, **quick)
        demo.load(
            open_shared,
            fragment,
            [shared_view, shared_chatbot, own_view],
            js="() => window.location.hash",
            api_name=False,
        )
        timer = gr.Timer(3.0)
        demo.load(readiness, None, [status, timer], **quick)
        timer.tick(readiness, None, [status, timer], **quick)
    return demo
