import pytest

from serving.config import RouterSettings
from serving.errors import InvalidRequestError
from serving.protocol import parse_request

SETTINGS = RouterSettings(max_message_chars=50, max_history_turns=2)


def test_valid_request_keeps_history_in_order():
    request = parse_request(
        '{"message": "Salut", "history": [{"role": "user", "content": "Hi"}, '
        '{"role": "assistant", "content": "Hello!"}]}',
        SETTINGS,
    )
    assert request.message == "Salut"
    assert [turn.role for turn in request.history] == ["user", "assistant"]


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
