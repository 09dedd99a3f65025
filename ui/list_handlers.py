"""The page's handlers for the list of conversations: open, start, rename, delete, export, import.

Each tab holds its list as a live object (``gr.State``) that every handler changes in place, so
a turn that ends after the person opened another conversation still lands in its own. After
each change, ``persist`` seals a copy that the page writes to localStorage (``WRITE_LIST``).
The other tabs of the browser hear that write and merge it into theirs (``take_up``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import gradio as gr

from serving.events import StoredTurn
from ui.conversation_files import MAX_IMPORT_BYTES, from_file, seal, to_file, to_markdown, unseal
from ui.conversations import ConversationError, Library, title_for
from ui.reply_stream import Halt, halt_all
from ui.turns import notice_for, to_messages

STORAGE_KEY = "polyglot-chat-conversations"
LIST_CHANGED_ID = "list-changed"  # a button never on screen, pressed by HEAR_OTHER_TABS
# The page opens: the sealed list, read from localStorage by the browser itself (the handler's
# other inputs pass through as they are).
READ_LIST = f"(sealed, ...rest) => [localStorage.getItem('{STORAGE_KEY}') || '', ...rest]"
# After each change: the sealed list into localStorage. A refused write (the browser's quota)
# is said under the list; otherwise the notice stays as the handler set it.
WRITE_LIST = f"""(sealed, notice) => {{
  if (!sealed) return notice;
  try {{
    localStorage.setItem('{STORAGE_KEY}', sealed);
    return notice;
  }} catch (error) {{
    return '⚠️ This browser refused to keep the list of conversations (' + error.name + '): '
      + 'export the ones you want to keep (Export JSON), or delete a few.';
  }}
}}"""
# Another tab of this browser wrote the list: this tab asks the server to merge it. The
# storage event fires in the other tabs only, never in the one that wrote.
HEAR_OTHER_TABS = f"""() => {{
  window.addEventListener('storage', (event) => {{
    if (event.key === '{STORAGE_KEY}' && event.newValue)
      document.getElementById('{LIST_CHANGED_ID}')?.click();
  }});
}}"""
# Export: the handler's payload becomes a file in the browser (nothing is served by the server).
DOWNLOAD = """(payload) => {
  if (!payload) return;
  const {name, type, text} = JSON.parse(payload);
  const url = URL.createObjectURL(new Blob([text], {type}));
  const link = Object.assign(document.createElement('a'), {href: url, download: name});
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}"""
# Import: the browser reads the file and sends its text, at most one byte over the limit (the
# handler refuses it then); nothing is uploaded to the server's files.
PICK_FILE = """() => new Promise((resolve) => {
  const input = Object.assign(document.createElement('input'),
                              {type: 'file', accept: '.json,application/json'});
  input.addEventListener('change', async () => {
    const file = input.files[0];
    resolve(file ? await file.slice(0, LIMIT + 1).text() : '');
  });
  input.addEventListener('cancel', () => resolve(''));
  input.click();
})""".replace("LIMIT", str(MAX_IMPORT_BYTES))


def listing(library: Library) -> gr.Radio:
    """The list as the page shows it, the conversation on screen selected (if it is listed)."""
    listed = library.find(library.active) is not None
    return gr.Radio(choices=library.choices(), value=library.active if listed else None)


def _file_name(title: str, suffix: str) -> str:
    return (re.sub(r"[^\w-]+", "-", title).strip("-")[:40] or "conversation") + suffix


def _view(turns: list[StoredTurn]) -> tuple:
    """The chat window, the stored turns and the notice, for a conversation opened."""
    return to_messages(turns), turns, notice_for(turns)


class ListHandlers:
    def __init__(self, budget_bytes: int, secret: str) -> None:
        self.budget_bytes = budget_bytes
        self.secret = secret

    def blank(self) -> Library:
        """The list a tab starts with, until ``load`` restores the stored one. The page holds
        one, ``gr.State(lists.blank())``, and Gradio gives each tab its own deep copy, which
        draws its own conversation id when first used. Not ``gr.State(lists.blank)``: for a
        callable, Gradio adds a load event that puts a new, empty list in the tab's state, and
        on a busy machine that ran after ``load`` had restored the list or after an import.

        Every handler that touches it is a coroutine: they all run on the replica's event loop,
        one at a time between awaits, so none sees the list half-changed."""
        return Library(self.budget_bytes)

    async def load(self, sealed: str, turns: list[StoredTurn] | None, library: Library) -> tuple:
        """The page opens with the sealed list that the browser read from localStorage: (chat
        window, stored turns, notice, list, name). It draws the list itself, so that the page
        shows it even if the write after it (``persist``) does not run."""
        saved: dict[str, Any] = {}
        if sealed:
            try:
                saved = unseal(sealed, self.secret)
            except ConversationError as error:
                gr.Warning(error.message)
        turns = library.restore(saved, list(turns or []))
        return *_view(turns), listing(library), library.title()

    async def persist(self, stored: str, library: Library) -> tuple:
        """The list, under its budget and sealed, for the browser to keep: (sealed list, list,
        name, list notice). ``stored``: the sealed list that localStorage holds now, read by the
        browser. A change made before the page's load event has restored the list (a quick
        person, a busy machine) first takes up the stored one (``Library.adopt``), so that it
        neither writes every stored conversation away nor stops saving. If the stored list
        cannot be read, nothing is written."""
        if not library.restored:
            try:
                library.adopt(unseal(stored, self.secret) if stored else {})
            except ConversationError:
                return "", gr.skip(), gr.skip(), gr.skip()
            library.restored = True
        went = library.fit()
        notice: Any = gr.skip()
        if went:
            notice = (
                "ℹ️ This browser's storage for the page is full, so the oldest went: "
                f"{', '.join(went)}. Export a conversation (JSON) to keep it elsewhere."
            )
            gr.Warning(notice)
        return seal(library.saved(), self.secret), listing(library), library.title(), notice

    async def take_up(self, sealed: str, library: Library, running: set[Halt]) -> tuple:
        """Another tab of this browser changed the list: this tab merges it into its own
        (``Library.adopt``) and shows it, with its own conversation, redrawn if the other tab
        changed it (unless a reply streams here: its end writes the conversation). If the other
        tab's copy lacked something of this one (it wrote a list read before this tab's last
        change), the merged list is written back; otherwise nothing is, so the tabs settle.
        (sealed list or "", list, name, chat window, stored turns, notice)"""
        try:
            saved = unseal(sealed, self.secret) if sealed else None
        except ConversationError as error:
            gr.Warning(error.message)
            saved = None
        if saved is None:
            return "", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        theirs = Library.stored(saved, library.budget_bytes)
        changed = library.adopt(theirs)
        write = ""
        if library.restored and library.holds_more_than(theirs):
            write, *_ = await self.persist(sealed, library)
        redraw = changed and not running
        view = _view(library.turns_on_screen()) if redraw else (gr.skip(), gr.skip(), gr.skip())
        return write, listing(library), library.title(), *view

    async def start_new(self, library: Library, running: set[Halt]) -> tuple:
        """A fresh conversation; a reply still streaming ends, kept in its own one. Pressed
        before the page's load event has restored the list, it waits for it (as a turn does):
        the load opens the conversation that the browser had on screen, and would switch the
        page back to it."""
        await library.until_restored()
        halt_all(running, keep=True)
        library.start_new()
        return _view([])

    async def open(self, choice: str | None, library: Library, running: set[Halt]):
        if not choice or choice == library.active:
            return gr.skip(), gr.skip(), gr.skip()
        halt_all(running, keep=True)
        try:
            return _view(library.open(choice))
        except ConversationError as error:
            gr.Warning(error.message)
            return gr.skip(), gr.skip(), gr.skip()

    async def rename(self, title: str, library: Library) -> None:
        try:
            library.rename(title)
        except ConversationError as error:
            gr.Warning(error.message)

    async def delete(self, library: Library, running: set[Halt]) -> tuple:
        halt_all(running, keep=False)
        library.delete()
        return _view([])

    def export_markdown(self, library: Library, turns: list[StoredTurn] | None) -> str:
        return self._export(library, turns, ".md", "text/markdown", to_markdown)

    def export_json(self, library: Library, turns: list[StoredTurn] | None) -> str:
        return self._export(library, turns, ".json", "application/json", to_file)

    def _export(self, library, turns, suffix: str, mime: str, render) -> str:
        """The file for the browser to save: its name, type and text (as JSON)."""
        if not turns:
            gr.Warning("There is nothing to export yet: send a message first.")
            return ""
        title = library.title() or title_for(turns)
        text = render(title, turns)
        return json.dumps({"name": _file_name(title, suffix), "type": mime, "text": text})

    async def import_file(self, text: str, library: Library, running: set[Halt]):
        """A file from "Export JSON", added to the list and opened; a bad one changes nothing.
        (chat window, stored turns, notice, the read file's text: emptied). Like a new
        conversation, it waits for the page's load event to have restored the list."""
        if not text:
            return gr.skip(), gr.skip(), gr.skip(), ""
        await library.until_restored()
        try:
            title, turns = from_file(text)
        except ConversationError as error:
            gr.Warning(error.message)
            return gr.skip(), gr.skip(), gr.skip(), ""
        halt_all(running, keep=True)
        library.add(title, turns)
        gr.Info(f"Imported “{library.title()}”.")
        return *_view(turns), ""
