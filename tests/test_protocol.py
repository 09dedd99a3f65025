import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.config import RouterSettings
from serving.errors import InvalidRequestError
from serving.protocol import clean_text, parse_request

SETTINGS = RouterSettings(max_message_chars=50, max_history_turns=2)


def test_valid_request_keeps_history_in_order():
    request = parse_request(
        '{"message": "Salut", "history": [{"role": "user", "content": "Hi"}, '
        '{"role": "assistant", "content": "Hello!"}]}',
        SETTINGS,
    )
    assert request.message == "Salut"
    assert [turn.role for turn in request.history] == ["user", "assistant"]
    assert request.language is None  # a new conversation, or a client that does not say


@pytest.mark.parametrize(("given", "read"), [("fr", "fr"), (" FR ", "fr"), ("", None)])
def test_the_conversation_s_language_is_read_as_the_events_write_it(given: str, read: str):
    request = parse_request({"message": "Oui", "language": given}, SETTINGS)
    assert request.language == read


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("not json", "Send one JSON object per turn"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "'message' is missing"),
        ('{"message": 5}', "'message' is not valid"),
        ('{"message": "   "}', "The message is empty"),
        ('{"message": "' + "x" * 51 + '"}', "51 characters; the limit is 50"),
        (
            '{"message": "hi", "history": [{"role": "system", "content": "x"}]}',
            "'history[0].role' must be",
        ),
        ('{"message": "hi", "history": [{"role": "user"}]}', "'history[0].content' is missing"),
        ('{"message": "hi", "language": ["fr"]}', "'language' is not valid"),
        ('{"message": "hi", "language": "' + "x" * 17 + '"}', "'language' is not valid"),
        (
            '{"message": "hi", "history": ['
            + ",".join(['{"role": "user", "content": "a"}'] * 3)
            + "]}",
            "3 entries",
        ),
    ],
)
def test_bad_requests_say_what_to_fix(raw: str, expected: str):
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(raw, SETTINGS)
    assert expected in caught.value.message
    assert caught.value.code == "invalid_request"


def test_control_characters_are_stripped_but_emoji_and_right_to_left_text_are_kept():
    raw = json.dumps(
        {
            "message": "Bon\x00jour\x07 👩\u200d💻 \u202bשלום\u202c مرحبا\r\nok\x9b",
            "history": [{"role": "user", "content": "a\x1bb\tc"}],
        }
    )
    request = parse_request(raw, RouterSettings())
    assert request.message == "Bonjour 👩\u200d💻 \u202bשלום\u202c مرحبا\nok"
    assert request.history[0].content == "ab\tc"


def test_huge_or_deeply_nested_requests_are_refused_clearly():
    settings = RouterSettings(max_request_bytes=2048)
    with pytest.raises(InvalidRequestError, match="the limit is 2048"):
        parse_request(json.dumps({"message": "x" * 3000}), settings)
    with pytest.raises(InvalidRequestError, match="JSON object"):
        parse_request("[" * 100_000 + "]" * 100_000, RouterSettings(max_request_bytes=10**6))


# Property-based: whatever arrives, the parser answers with a request or a clear refusal.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
TURN = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text()})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), JSON.map(json.dumps)))
def test_any_input_gives_a_request_or_an_invalid_request_error(raw):
    try:
        request = parse_request(raw, SETTINGS)
    except InvalidRequestError as error:
        assert error.message and error.code == "invalid_request"
    else:
        assert request.message.strip() and len(request.history) <= SETTINGS.max_history_turns


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=50), st.lists(TURN, max_size=2))
def test_a_valid_request_keeps_its_text_without_control_characters(message, history):
    try:
        request = parse_request(json.dumps({"message": message, "history": history}), SETTINGS)
    except InvalidRequestError as error:
        assert not clean_text(message).strip() or len(message) > 50, error.message
        return
    assert request.message == clean_text(message)
    assert [t.content for t in request.history] == [clean_text(t["content"]) for t in history]
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in request.message)
