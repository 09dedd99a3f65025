"""The list of conversations and its files, as plain objects (no browser, no server)."""

import json
from datetime import UTC, datetime

import pytest

from tests.support import FRENCH_TURN as FRENCH
from ui.conversation_files import MAX_IMPORT_BYTES, from_file, seal, to_file, to_markdown, unseal
from ui.conversations import UNTITLED, ConversationError, Library, title_for

ENGLISH = {
    "user": "Give me three tips to sleep better, please, and keep them short",
    "assistant": "Go to bed at the same time.",
    "user_en": "Give me three tips to sleep better, please, and keep them short",
    "assistant_en": "Go to bed at the same time.",
    "language": "en",
}
BIG = 1 << 20


def turn(text: str, size: int = 0) -> dict:
    return {**ENGLISH, "user": text, "user_en": text, "assistant": "x" * size}


def test_a_conversation_is_named_after_its_first_message_on_one_line():
    assert title_for([]) == UNTITLED
    assert title_for([FRENCH]) == "Salut"
    long = title_for([ENGLISH])
    assert len(long) == 48 and long.endswith("…") and long.startswith("Give me three tips")
    assert title_for([turn("two\n\nlines")]) == "two lines"


def test_turns_join_the_list_newest_first_and_an_empty_conversation_leaves_it():
    library = Library(BIG)
    first = library.active
    library.record(first, [FRENCH])
    library.start_new()
    library.record(library.active, [ENGLISH])
    assert [title for title, _ in library.choices()] == [title_for([ENGLISH]), "Salut"]
    assert library.open(first) == [FRENCH] and library.title() == "Salut"
    library.record(first, [FRENCH, ENGLISH])  # a new turn moves it to the top
    assert library.choices()[0] == ("Salut", first)
    library.record(first, [])  # undone to nothing: it leaves the list
    assert [identifier for _, identifier in library.choices()] != [first]
    assert library.find(first) is None and len(library.conversations) == 1


def test_rename_sticks_and_delete_opens_a_new_conversation():
    library = Library(BIG)
    with pytest.raises(ConversationError, match="no name yet"):
        library.rename("Too early")
    library.record(library.active, [FRENCH])
    with pytest.raises(ConversationError, match="cannot be empty"):
        library.rename("  \n ")
    library.rename("  My   French\nchat ")
    library.record(library.active, [FRENCH, ENGLISH])  # the name no longer follows the message
    assert library.title() == "My French chat"
    deleted = library.active
    library.delete()
    assert library.active != deleted and library.conversations == []
    with pytest.raises(ConversationError, match="no longer"):
        library.open(deleted)


def test_the_stored_list_reads_back_and_the_current_turns_win():
    library = Library(BIG)
    library.record(library.active, [FRENCH])
    library.rename("Named")
    saved = json.loads(json.dumps(library.saved()))  # through the browser's JSON
    again = Library(BIG)
    shown = again.restore(saved, [FRENCH, ENGLISH])
    assert shown == [FRENCH, ENGLISH] and again.title() == "Named"
    assert again.find(again.active).turns == [FRENCH, ENGLISH]
    library.start_new()
    library.record(library.active, [ENGLISH])  # newer, but not on screen when the page closed
    ordered = json.loads(json.dumps(library.saved()))
    ordered["active"] = ordered["conversations"][1]["id"]
    again = Library(BIG)
    again.restore(ordered, [FRENCH])  # unchanged on screen: the order stays
    assert [title for title, _ in again.choices()] == [title_for([ENGLISH]), "Named"]
    # The current conversation's own storage is empty (cleared, or from before the list):
    # the list's copy is shown, not deleted.
    again = Library(BIG)
    shown = again.restore(saved, [])
    assert shown == [FRENCH] and len(again.conversations) == 1
    # A page from before the list: its conversation becomes the first entry.
    again, blank = Library(BIG), Library(BIG)
    assert again.restore({}, [FRENCH]) == [FRENCH]
    assert again.choices() == [("Salut", again.active)] and again.active != blank.active
    assert again.restored and not blank.restored
    # Entries that do not read are left out, the rest kept.
    saved["conversations"].append({"id": "x", "turns": [{"user": 1}]})
    saved["conversations"].append("garbage")
    again = Library(BIG)
    again.restore(saved, [])
    assert [title for title, _ in again.choices()] == ["Named"]


def test_a_tab_takes_up_the_list_another_tab_wrote_and_keeps_its_own_conversation():
    one, other = Library(BIG), Library(BIG)  # two tabs of one browser, one storage
    one.record(one.active, [FRENCH])
    assert not other.adopt(json.loads(json.dumps(one.saved())))  # its screen did not change
    other.record(other.active, [ENGLISH])  # written after: without adopt, FRENCH's entry goes
    assert [title for title, _ in other.choices()] == [title_for([ENGLISH]), "Salut"]
    assert other.active != one.active
    # The other tab goes on with the conversation this one shows: it is redrawn here.
    one.adopt(json.loads(json.dumps(other.saved())))
    other.open(one.active)
    other.record(one.active, [FRENCH, ENGLISH])
    assert one.adopt(json.loads(json.dumps(other.saved())))
    assert one.turns_on_screen() == [FRENCH, ENGLISH] and one.title() == "Salut"
    # ...or renames it, or deletes it: this tab then shows an empty one.
    other.rename("Bilingual")
    assert one.adopt(other.saved()) and one.title() == "Bilingual"
    other.delete()
    assert one.adopt(other.saved()) and one.turns_on_screen() == []
    assert one.choices() == [(title_for([ENGLISH]), other.conversations[0].id)]


def test_a_copy_older_than_this_tab_s_own_changes_undoes_none_of_them():
    """A tab reads the other's copy when it is written, and merges it a moment later: a turn
    that ended here meanwhile stands, and what was deleted here stays deleted."""
    one, other = Library(BIG), Library(BIG)
    one.record(one.active, [FRENCH])
    kept = one.active
    one.start_new()
    one.record(one.active, [ENGLISH])
    other.adopt(json.loads(json.dumps(one.saved())))
    stale = json.loads(json.dumps(other.saved()))  # read when the other tab wrote...
    one.record(one.active, [ENGLISH, FRENCH])  # ...then a turn ends here, and one is deleted
    one.open(kept)
    one.delete()
    assert not one.adopt(stale)  # neither change was on the other tab's copy
    assert one.choices() == [(title_for([ENGLISH]), one.conversations[0].id)]
    assert one.conversations[0].turns == [ENGLISH, FRENCH]
    # The deletion travels with the list: the other tab drops the conversation too.
    other.adopt(json.loads(json.dumps(one.saved())))
    assert [c.turns for c in other.conversations] == [[ENGLISH, FRENCH]]


def test_a_tab_knows_when_another_tab_s_copy_lacks_one_of_its_turns_or_deletions():
    """What makes a tab write its merged list back (``take_up``): the other tab's copy lacks a
    conversation, a newer copy of one, or a deletion. Once both hold the same, neither does."""
    one, other = Library(BIG), Library(BIG)
    one.record(one.active, [FRENCH])
    kept = one.active
    one.start_new()
    one.record(one.active, [ENGLISH])

    def copy(library: Library) -> Library:
        return Library.stored(json.loads(json.dumps(library.saved())), BIG)

    assert one.holds_more_than(copy(other))  # two conversations the other tab never saw
    other.adopt(copy(one))
    assert not one.holds_more_than(copy(other)) and not other.holds_more_than(copy(one))
    one.record(one.active, [ENGLISH, FRENCH])  # a newer copy of a conversation
    assert one.holds_more_than(copy(other))
    other.adopt(copy(one))
    one.open(kept)
    one.delete()  # a deletion alone
    assert kept in {c.id for c in copy(other).conversations}  # the other tab still lists it
    assert one.holds_more_than(copy(other))
    other.adopt(copy(one))
    assert not one.holds_more_than(copy(other)) and kept not in {c.id for c in other.conversations}


def test_the_conversation_on_screen_is_not_overwritten_by_another_tab_s_copy():
    """Tabs share the current conversation's own storage too: the last tab to write it wins.
    A reload shows the list's active conversation, and never puts another one's turns in it."""
    library = Library(BIG)
    library.record(library.active, [FRENCH])
    french = library.active
    library.start_new()
    library.record(library.active, [ENGLISH])
    library.open(french)  # this tab wrote the list last, on "Salut"; the other, ENGLISH's turns
    saved = json.loads(json.dumps(library.saved()))
    again = Library(BIG)
    assert again.restore(saved, [ENGLISH]) == [FRENCH]
    assert again.find(french).turns == [FRENCH] and len(again.conversations) == 2
    # A trimmed or older copy in the list still takes the newer turns of its own.
    again = Library(BIG)
    assert again.restore(saved, [FRENCH, ENGLISH]) == [FRENCH, ENGLISH]
    # Two conversations that begin alike: the copy is the one's that shares the most turns.
    library = Library(BIG)
    library.record(library.active, [FRENCH, turn("x")])
    alike = library.active
    library.start_new()
    library.record(library.active, [FRENCH, turn("z")])
    library.open(alike)
    saved = json.loads(json.dumps(library.saved()))
    assert Library(BIG).restore(saved, [FRENCH, turn("z"), turn("z2")]) == [FRENCH, turn("x")]
    assert Library(BIG).restore(saved, [FRENCH, turn("x"), turn("x2")])[-1] == turn("x2")


def test_past_its_budget_the_list_drops_the_oldest_other_conversations_first():
    library = Library(4096)
    for name in ("one", "two", "three"):
        library.start_new()
        library.record(library.active, [turn(name, 900)])
        assert library.fit() == []
    library.open(library.conversations[-1].id)  # opening "one" does not make it newer
    library.start_new()
    library.record(library.active, [turn("four", 900)])
    assert library.fit() == ["“one”"]  # the one on screen stays: "one" had been opened, not changed
    assert library.size() <= 4096
    assert [title for title, _ in library.choices()] == ["four", "three", "two"]


def test_a_conversation_alone_over_the_budget_keeps_its_newest_turns():
    library = Library(4096)
    library.record(library.active, [turn(f"turn {n}", 1000) for n in range(6)])
    went = library.fit()
    kept = library.find(library.active).turns
    assert went and all("oldest exchange" in line for line in went)
    assert library.size() <= 4096 and kept[-1]["user"] == "turn 5" and len(kept) < 6


def test_markdown_export_is_readable_with_the_english_original_folded():
    stopped = {**ENGLISH, "stopped": True}
    text = to_markdown("Chat", [FRENCH, stopped], datetime(2026, 11, 29, 14, 5, tzinfo=UTC))
    assert text.startswith("# Chat\n\n*Exported from Polyglot chat on 2026-11-29 14:05 UTC*\n")
    assert "**You:** Salut\n\n**Assistant:** Bonjour !" in text
    assert "<details><summary>English original</summary>\n\n**You:** Hi\n\n" in text
    assert text.count("<details>") == 1  # English turns have nothing to fold
    assert "**Assistant:** Go to bed at the same time. *(stopped)*" in text


def test_the_json_file_reads_back_as_the_same_turns():
    turns = [FRENCH, {**ENGLISH, "stopped": True, "history_dropped": 2}]
    assert from_file(to_file("Chat", turns)) == ("Chat", turns)
    assert from_file(to_file("", [FRENCH])) == ("Salut", [FRENCH])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ("[]", "not a conversation exported"),
        (json.dumps({"format": "other", "turns": [FRENCH]}), "not a conversation exported"),
        (json.dumps({"format": "polyglot-chat", "version": 9, "turns": [FRENCH]}), "version 9"),
        (json.dumps({"format": "polyglot-chat", "version": 1, "turns": []}), "no turns"),
        (
            json.dumps({"format": "polyglot-chat", "version": 1, "turns": [{**FRENCH, "user": 3}]}),
            "turn 1 lacks",
        ),
        (
            json.dumps(
                {"format": "polyglot-chat", "version": 1, "turns": [{**FRENCH, "language": "<b>"}]}
            ),
            "language code",
        ),
        ("x" * (MAX_IMPORT_BYTES + 1), "over 1 MB"),
    ],
)
def test_a_damaged_or_hostile_file_gets_a_clear_message(text: str, says: str):
    with pytest.raises(ConversationError, match=says):
        from_file(text)


def test_an_imported_conversation_is_added_and_opened_under_its_title():
    library = Library(BIG)
    library.record(library.active, [ENGLISH])
    before = library.active
    library.add("From a file", [FRENCH])
    assert library.active != before and library.title() == "From a file"
    assert [title for title, _ in library.choices()][0] == "From a file"
    library.add("Salut", [FRENCH])  # its title is its first message: it follows it, unnamed
    assert not library.find(library.active).named


def test_the_stored_list_is_sealed_and_a_changed_one_is_refused():
    library = Library(BIG)
    library.record(library.active, [FRENCH])
    sealed = seal(library.saved(), "key")
    assert "Salut" not in sealed  # encrypted, not only encoded
    assert unseal(sealed, "key") == json.loads(json.dumps(library.saved()))
    with pytest.raises(ConversationError, match="cannot be read"):
        unseal(sealed, "another key")
    changed = sealed[:-8] + ("A" if sealed[-8] != "A" else "B") + sealed[-7:]
    with pytest.raises(ConversationError, match="cannot be read"):
        unseal(changed, "key")
