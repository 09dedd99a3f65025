"""The page through its own API with gradio_client, and the page's pure helpers."""

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from serving.events import DeltaEvent, DoneEvent, Event, StartEvent
from tests.support import FRENCH_TURN as FRENCH
from tests.support import api_ws_url
from ui.client import api_ready, health_url
from ui.page import ENGLISH_EXAMPLES, build_demo, spoken
from ui.reply_stream import REDRAW_INTERVAL_S, Halt, redrawn, until_halted
from ui.share import MAX_LINK_CHARS, ShareError, decode, encode, token_in
from ui.turns import ENGLISH_ORIGINAL, notice_for, to_history_en, to_messages, turn_at

ENGLISH = {
    "user": "Thanks",
    "assistant": "You are welcome.",
    "user_en": "Thanks",
    "assistant_en": "You are welcome.",
    "language": "en",
}
TURNS = [FRENCH]


def test_history_sent_to_the_model_is_the_english_side():
    assert to_history_en(TURNS) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert to_messages(TURNS)[1] == {"role": "assistant", "content": "Bonjour !"}


def test_a_translated_turn_shows_its_english_original_in_a_closed_fold():
    german = {**FRENCH, "user": "Hallo", "assistant": "Hallo!", "language": "de"}
    messages = to_messages([FRENCH, ENGLISH, german])
    assert len(messages) == 8  # the English turn has no fold
    for fold in (messages[2], messages[7]):
        assert fold["metadata"] == {"title": ENGLISH_ORIGINAL, "status": "done"}
        assert "Hi" in fold["content"] and "Hello!" in fold["content"]


def test_messages_map_back_to_their_turns():
    turns = [FRENCH, ENGLISH, FRENCH]
    owners = [turn_at(turns, index) for index in range(len(to_messages(turns)))]
    assert owners == [0, 0, 0, 1, 1, 2, 2, 2]


def test_a_stopped_reply_is_marked_and_trimming_is_announced():
    stopped = {**ENGLISH, "stopped": True, "history_dropped": 6}
    assert to_messages([stopped])[1]["content"].endswith("*(stopped)*")
    assert "first 6 messages" in notice_for([FRENCH, stopped])
    assert notice_for([FRENCH]) == "" and notice_for([]) == ""
    polish = {**FRENCH, "language": "en", "heard": "pl", "reason": "unserved"}
    assert "Polish is not one of the languages" in notice_for([polish])
    assert "too short" in notice_for([{**polish, "heard": None, "reason": "unsure"}])


def test_a_halt_ends_a_waiting_stream_at_once_and_closes_it():
    """Stop must not wait for the next event (a French sentence can take seconds) and must close
    the stream, which is what closes the WebSocket and cancels the request in the router."""
    closed = asyncio.Event()

    async def stream():
        try:
            yield DeltaEvent(text="Bon")
            await asyncio.sleep(3600)  # the next event is far away
            yield DeltaEvent(text="jour")
        finally:
            closed.set()

    async def scenario():
        halt, seen = Halt(), []
        async for event in until_halted(stream(), halt):
            seen.append(event.text)
            asyncio.get_running_loop().call_later(0.05, halt, True)
        return seen, halt.keep

    seen, keep = asyncio.run(asyncio.wait_for(scenario(), timeout=5))
    assert seen == ["Bon"] and keep and closed.is_set()


def test_cancelling_the_turn_itself_also_closes_the_stream():
    """The tab closes mid-turn: Gradio cancels the turn while a read is pending."""
    closed = asyncio.Event()

    async def stream():
        try:
            yield DeltaEvent(text="Bon")
            await asyncio.sleep(3600)
            yield DeltaEvent(text="jour")
        finally:
            closed.set()

    async def consume():
        async for _ in until_halted(stream(), Halt()):
            pass

    async def scenario():
        turn = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        turn.cancel()
        await asyncio.gather(turn, return_exceptions=True)
        return closed.is_set()

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=5))


def test_an_unhalted_stream_is_passed_through_whole():
    async def stream():
        for text in ["a", "b", "c"]:
            yield DeltaEvent(text=text)

    async def scenario():
        return [event.text async for event in until_halted(stream(), Halt())]

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_the_page_names_the_languages_that_the_config_serves():
    headline, placeholder, examples = spoken(["fr", "es"])
    assert headline == "Chat in English, French or Spanish: replies come in your language."
    assert placeholder == "Écrivez en français · Escribe en español or write in English…"
    assert "¿Qué puedo cocinar con arroz y verduras?" in examples
    assert spoken([]) == ("Chat in English.", "Write in English…", ENGLISH_EXAMPLES)


def test_page_builds_without_serve():
    demo = build_demo("ws://127.0.0.1:9/api/chat", "Test")
    assert demo.title == "Test"


def _text(message: dict) -> str:
    content = message["content"]
    return (
        content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
    )


@pytest.fixture
def client(tiny_app: str) -> Client:
    return Client(tiny_app + "/", verbose=False)


def test_reply_streams_into_the_page_and_state_keeps_both_languages(client: Client):
    job = client.submit("Bonjour, comment allez-vous ?", TURNS, api_name="/chat")
    updates = list(job)
    assert len(updates) >= 3  # user message shown, then partial replies, then the final turn
    partial_lengths = [len(_text(update[0][-1])) for update in updates if len(update[0]) == 5]
    assert partial_lengths == sorted(partial_lengths) and len(set(partial_lengths)) > 1
    chat, turns, box, notice = job.outputs()[-1]
    assert box == "" and notice == ""
    assert len(turns) == 2 and turns[0] == TURNS[0]
    new = turns[1]
    assert new["user"] == "Bonjour, comment allez-vous ?" and new["language"] == "fr"
    assert new["user_en"] and new["assistant_en"] and new["assistant"]
    assert new["history_dropped"] == 0
    assert _text(chat[-2]) == new["assistant"]  # then the fold with its English original
    assert chat[-1]["metadata"]["title"] == ENGLISH_ORIGINAL


def test_the_page_api_takes_a_message_alone_and_a_history_to_go_on(client: Client):
    """As with Gradio's ChatInterface: no history is a new conversation, and the turns that come
    back continue it."""
    first = client.submit("Bonjour, comment allez-vous ?", api_name="/chat")
    assert len(list(first)) >= 2  # the message shown at once, then the reply as it streams
    chat, turns, box, notice = first.outputs()[-1]
    assert box == "" and len(turns) == 1
    assert turns[0]["user"] == "Bonjour, comment allez-vous ?" and turns[0]["language"] == "fr"
    assert turns[0]["assistant"].strip() and turns[0]["assistant_en"].strip()
    chat, more, box, notice = client.predict("And tomorrow?", turns, api_name="/chat")
    assert len(more) == 2 and more[0] == turns[0] and more[1]["user"] == "And tomorrow?"


def test_turns_that_are_not_the_page_s_are_refused_with_what_to_send(client: Client):
    """The chat window's messages, a string, or a turn without its fields: a clear error that
    names what to send, never a Python one ("'assistant'"); then the same client goes on."""
    chat, turns, _, _ = client.predict("Hello there", api_name="/chat")
    for wrong in (chat, "nonsense", [{"user": "Hi"}]):
        with pytest.raises(AppError) as refused:
            client.predict("And tomorrow?", wrong, api_name="/chat")
        message = str(refused.value)
        assert "cannot continue a conversation" in message, message
        assert "the last /chat call returned" in message, message
    _, more, _, _ = client.predict("And tomorrow?", turns, api_name="/chat")
    assert len(more) == 2 and more[0] == turns[0]


def test_a_short_answer_in_a_french_conversation_gets_a_french_reply(client: Client):
    """The page sends the conversation's language: "Oui, merci", too short to tell alone
    (English, and the page says why), goes on in French after a French turn, and in English
    after an English one, with no note."""
    _, turns, _, _ = client.predict("Bonjour, comment allez-vous ?", api_name="/chat")
    assert turns[-1]["language"] == "fr"
    _, turns, _, notice = client.predict("Oui, merci", turns, api_name="/chat")
    assert turns[-1]["language"] == "fr" and turns[-1]["user_en"] != "Oui, merci"
    assert notice == ""
    _, alone, _, notice = client.predict("Oui, merci", api_name="/chat")
    assert alone[-1]["language"] == "en" and "too short" in notice
    # That conversation is in English now: the same words go on in English, with no note.
    _, alone, _, notice = client.predict("Oui, merci", alone, api_name="/chat")
    assert alone[-1]["language"] == "en" and notice == ""


def test_the_page_says_when_old_turns_left_the_models_view(client: Client):
    long_turn = {**ENGLISH, "user": "What would you like to eat tonight? " * 8}
    long_turn["user_en"] = long_turn["user"]
    chat, turns, box, notice = client.predict("And tomorrow?", [long_turn] * 12, api_name="/chat")
    assert turns[-1]["history_dropped"] > 0
    assert f"first {turns[-1]['history_dropped']} messages" in notice


def test_blank_message_is_kept_out_and_nothing_is_lost(client: Client):
    chat, turns, box, notice = client.predict("   ", TURNS, api_name="/chat")
    assert turns == TURNS
    assert len(chat) == 3


def test_a_conversation_survives_the_trip_through_a_link():
    stopped = {**ENGLISH, "stopped": True, "history_dropped": 4}
    dutch = {**FRENCH, "user": "Hoi", "assistant": "Hallo!", "language": "nl"}
    token = encode([FRENCH, stopped, dutch])
    assert token_in(f"#shared={token}") == token and token_in("#other") is None
    turns = decode(token)
    assert to_messages(turns) == to_messages([FRENCH, stopped, dutch])  # what the reader sees
    assert [turn["language"] for turn in turns] == ["fr", "en", "nl"]
    assert "history_dropped" not in turns[1]  # only what is shown travels


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64 !",
        encode([]).replace("e", "f"),
        "eJzLSM3JyVcozy/KSQEAGgQEXQ",  # zlib("hello world"): not a conversation
        "x" * (MAX_LINK_CHARS + 1),
    ],
)
def test_a_damaged_link_is_refused_clearly(token: str):
    with pytest.raises(ShareError, match="damaged or incomplete"):
        decode(token)


def test_a_link_cannot_inflate_into_a_memory_bomb():
    import base64
    import zlib

    bomb = zlib.compress(b"[" + b" " * 50_000_000 + b"]", 9)
    with pytest.raises(ShareError):
        decode(base64.urlsafe_b64encode(bomb).decode())


def test_a_conversation_too_long_for_a_link_says_so():
    import random

    rng = random.Random(0)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(120_000))
    with pytest.raises(ShareError, match="too long"):
        encode([{**ENGLISH, "assistant": noise}])


def test_the_page_knows_when_the_api_is_ready(tiny_app: str):
    assert health_url("ws://h:1/api/chat") == "http://h:1/api/healthz"
    assert health_url("wss://h/x/api/chat") == "https://h/x/api/healthz"
    assert asyncio.run(api_ready(api_ws_url(tiny_app)))
    assert not asyncio.run(api_ready("ws://127.0.0.1:9/api/chat"))  # nothing listens there


def test_the_page_serves_no_files_and_no_code_editor(tiny_app: str):
    import httpx

    for path in ("/gradio_api/file=/etc/passwd", "/gradio_api/file=pyproject.toml"):
        response = httpx.get(tiny_app + path, timeout=10)
        assert response.status_code in (403, 404) and "root:" not in response.text, path
    edit = httpx.post(tiny_app + "/gradio_api/vibe-edit", json={"prompt": "x"}, timeout=10)
    assert edit.status_code >= 400  # Gradio's in-browser code editor stays off


OPEN_TABS = 100


def test_a_hundred_open_tabs_leave_room_for_the_next_visitor(tiny_app: str):
    """Each open tab holds a request of the page's replica for as long as it is open (Gradio's
    heartbeat): a hundred of them, held here, must not keep the next visitor from a reply."""
    import httpx

    def visit() -> str:
        job = Client(tiny_app + "/", verbose=False).submit("Hello there", api_name="/chat")
        _, turns, _, _ = job.result(timeout=60)
        return turns[-1]["assistant"]

    async def with_tabs_open() -> str:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        http = httpx.AsyncClient(timeout=30, limits=limits)
        async with http, contextlib.AsyncExitStack() as tabs:
            for number in range(OPEN_TABS):
                url = f"{tiny_app}/gradio_api/heartbeat/tab{number}"
                try:
                    held = await tabs.enter_async_context(http.stream("GET", url))
                except httpx.TimeoutException:
                    pytest.fail(f"tab {number + 1} waited 30 s for the page's replica to open")
                assert held.status_code == 200
            return await asyncio.wait_for(asyncio.to_thread(visit), timeout=90)

    assert asyncio.run(with_tabs_open())


def test_each_tab_gets_its_own_list_and_no_load_event_replaces_it():
    """Gradio gives each tab a deep copy of a ``gr.State``'s value; for a callable value it also
    adds a load event that replaces the tab's state. That event raced with the page's own load
    (which restores the list) and with a quick first action: in CI, a conversation imported
    into a fresh page showed in the list but not in the chat window."""
    import copy

    from ui.conversations import Library

    demo = build_demo("ws://127.0.0.1:9/api/chat", "Test")
    states = [block for block in demo.blocks.values() if isinstance(block, gr.State)]
    on_load = [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)]
    assert on_load  # the page's own load events are there to be checked
    for fn in on_load:
        replaced = [block for block in fn.outputs if block in states]
        assert not replaced, f"{fn.name} replaces a tab's state when the page loads"
    (template,) = [block.value for block in states if isinstance(block.value, Library)]
    one, two = copy.deepcopy(template), copy.deepcopy(template)  # as Gradio does, per tab
    assert one.active != two.active  # two new tabs must not start the same conversation


def test_a_list_the_page_has_not_read_takes_up_the_stored_one_before_it_is_written():
    """Should an event get a Library that never read the browser's list (its load event failed,
    or had not run yet when the person acted), the write must not replace every stored
    conversation with this list: it takes up the stored one first. A stored list that cannot
    be read is not written over."""
    from ui.conversation_files import seal, unseal
    from ui.conversations import Library
    from ui.list_handlers import ListHandlers

    lists = ListHandlers(1 << 20, "test-secret")
    stored = Library(1 << 20)
    stored.record(stored.active, [FRENCH])
    sealed_stored = seal(stored.saved(), "test-secret")
    both = sorted([FRENCH["user"], "Thanks"])

    library = lists.blank()
    library.record(library.active, [ENGLISH])  # a turn that ended before the list was read
    sealed, *_ = asyncio.run(lists.persist(sealed_stored[:-8], library))
    assert sealed == ""  # unreadable: the page writes nothing (WRITE_LIST skips an empty one)
    sealed, shown, *_ = asyncio.run(lists.persist(sealed_stored, library))
    kept = unseal(sealed, "test-secret")["conversations"]
    assert sorted(c["turns"][0]["user"] for c in kept) == both
    assert sorted(title for title, _ in shown.choices) == both

    fresh = lists.blank()  # the load event draws the list itself
    *_, shown, _ = asyncio.run(lists.load(sealed_stored, [], fresh))
    assert [title for title, _ in shown.choices] == [FRENCH["user"]]


@pytest.mark.parametrize("action", ["import", "new"])
def test_an_import_or_new_conversation_before_the_page_has_read_its_list_is_not_undone(action):
    """On a busy machine the page's load event (which restores the list and opens the
    conversation the browser had on screen) can be processed after a quick first action. An
    import or a new conversation waits for it: run before it, the load switched the page back
    to the stored conversation."""
    from ui.conversation_files import seal, to_file
    from ui.conversations import Library
    from ui.list_handlers import ListHandlers

    lists = ListHandlers(1 << 20, "test-secret")
    stored = Library(1 << 20)
    stored.record(stored.active, [ENGLISH])  # on screen when the browser last wrote its list
    library = lists.blank()

    async def race() -> tuple:
        if action == "import":
            first = lists.import_file(to_file("Imported", [FRENCH]), library, set())
        else:
            first = lists.start_new(library, set())
        acted = asyncio.create_task(first)
        await asyncio.sleep(0.2)  # the action reaches the server first...
        loaded = await lists.load(seal(stored.saved(), "test-secret"), [], library)
        return loaded, await acted  # ...and what is drawn last is what it drew

    loaded, acted = asyncio.run(race())
    assert loaded[0] == to_messages([ENGLISH])  # the load opened the stored conversation
    assert library.active != stored.active  # then the action, on top of the restored list
    chat, turns, *_ = acted
    assert turns == ([FRENCH] if action == "import" else [])
    assert library.title() == ("Imported" if action == "import" else "")
    assert chat == to_messages(turns)
    assert library.turns_on_screen() == turns
    assert library.find(stored.active).turns == [ENGLISH]  # the stored one is still listed


def test_a_tab_writes_its_merge_back_only_when_the_other_tab_s_copy_was_behind():
    """A tab that opened before another's turn ended writes a list without that turn; the tab
    that has it merges the stale copy and writes the merge back, so storage is not left behind.
    A copy that lacks nothing gets no write, so the tabs settle instead of answering each other
    forever."""
    from ui.conversation_files import seal, unseal
    from ui.list_handlers import ListHandlers

    lists = ListHandlers(1 << 20, "test-secret")
    one, two = lists.blank(), lists.blank()
    one.restored = two.restored = True  # as after each tab's load event
    stale = seal(two.saved(), "test-secret")  # the second tab's list, read before the turn
    one.record(one.active, [ENGLISH])

    written, *_ = asyncio.run(lists.take_up(stale, one, set()))
    assert [c["turns"] for c in unseal(written, "test-secret")["conversations"]] == [[ENGLISH]]
    written_again, *_ = asyncio.run(lists.take_up(written, one, set()))
    assert written_again == ""  # its own copy back: nothing more to write


def test_a_message_halted_before_its_reply_goes_back_to_the_box_after_a_switch(tiny_app: str):
    """New conversation, pressed as a message is sent, races it in Gradio's queue. When the
    send runs first, New halts it before any reply: nothing is written anywhere, and the message
    returns to the text box, which every conversation shares, so nothing typed is lost."""
    from ui.list_handlers import ListHandlers
    from ui.turn_handlers import TurnHandlers

    lists, turn = ListHandlers(1 << 20, "test-secret"), TurnHandlers(api_ws_url(tiny_app))
    library, running = lists.blank(), set()
    library.restored = True  # as after the page's load event
    old = library.active

    async def race() -> tuple:
        updates = turn.send("Hello there", running, library, None)
        first = await anext(updates)  # on screen in the old conversation; the API not yet asked
        await lists.start_new(library, running)
        return first, [update async for update in updates]

    first, rest = asyncio.run(race())
    assert first[2] == "" and rest, (first, rest)  # the box was emptied as the message went up
    chat, turns, box, _, _ = rest[-1]
    assert box == "Hello there"  # ...and the message is back in it
    assert chat == turns == gr.skip()  # the new conversation's screen is left alone
    assert library.active != old and library.conversations == []  # nothing was written


def test_the_page_redraws_once_for_the_deltas_that_came_together():
    """The page paces its events: consecutive deltas become one, other events stay as they are."""
    events = [
        StartEvent(language="fr", message_en="Hello!"),
        DeltaEvent(text="Bon", text_en="Good"),
        DeltaEvent(text="jour"),
        DeltaEvent(text=" !", text_en=" day!"),
        DoneEvent(reply="Bonjour !", reply_en="Good day!", message_en="Hello!", language="fr"),
    ]

    async def source() -> AsyncGenerator[Event, None]:
        for event in events:
            yield event

    async def listen() -> list[Event]:
        return [event async for event in redrawn(source())]

    assert asyncio.run(listen()) == [
        events[0],
        DeltaEvent(text="Bonjour !", text_en="Good day!"),
        events[4],
    ]


def test_the_first_words_are_drawn_at_once_after_the_start_event():
    """The start event sets the notice, not the reply: the first words, a moment after it,
    are not held back for a redraw interval; the words after them are."""
    pause = REDRAW_INTERVAL_S / 4
    events = [StartEvent(language="en", message_en="Hi"), DeltaEvent(text="Hello")]
    done = DoneEvent(reply="Hello there", reply_en="Hello there", message_en="Hi", language="en")
    events += [DeltaEvent(text=" there"), done]

    async def source() -> AsyncGenerator[Event, None]:
        for event in events:
            yield event
            await asyncio.sleep(pause)
        await asyncio.sleep(REDRAW_INTERVAL_S)  # a source that ends is drawn at once

    async def listen() -> list[tuple[float, Event]]:
        started = time.monotonic()
        return [(time.monotonic() - started, event) async for event in redrawn(source())]

    drawn = asyncio.run(listen())
    assert [event for _, event in drawn] == events
    _, (first_words, _), (next_words, _), _ = drawn
    assert first_words < pause + REDRAW_INTERVAL_S / 2, drawn  # not held back by the start
    assert next_words - first_words >= REDRAW_INTERVAL_S * 0.9, drawn  # paced from there on
