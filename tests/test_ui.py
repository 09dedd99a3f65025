"""The page through its own API with gradio_client, and the page's pure helpers."""

import pytest
from gradio_client import Client

from ui.page import build_demo, to_history_en, to_messages

TURNS = [
    {
        "user": "Salut",
        "assistant": "Bonjour !",
        "user_en": "Hi",
        "assistant_en": "Hello!",
        "language": "fr",
    },
]


def test_history_sent_to_the_model_is_the_english_side():
    assert to_history_en(TURNS) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert to_messages(TURNS)[1] == {"role": "assistant", "content": "Bonjour !"}


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
    partial_lengths = [len(_text(update[0][-1])) for update in updates if len(update[0]) == 4]
    assert partial_lengths == sorted(partial_lengths) and len(set(partial_lengths)) > 1
    chat, turns, box = job.outputs()[-1]
    assert box == ""
    assert len(turns) == 2 and turns[0] == TURNS[0]
    new = turns[1]
    assert new["user"] == "Bonjour, comment allez-vous ?" and new["language"] == "fr"
    assert new["user_en"] and new["assistant_en"] and new["assistant"]
    assert _text(chat[-1]) == new["assistant"]


def test_blank_message_is_kept_out_and_nothing_is_lost(client: Client):
    chat, turns, box = client.predict("   ", TURNS, api_name="/chat")
    assert turns == TURNS
    assert len(chat) == 2
