import asyncio

import pytest

from serving.stop_sequences import StopSequences


def fed(stops: StopSequences, pieces: list[str]) -> list[str]:
    """What goes out after each piece, then what is left at the end."""
    return [stops.feed(piece) for piece in pieces] + [stops.flush()]


def test_text_without_a_sequence_goes_out_as_it_comes():
    stops = StopSequences(["User:"])
    assert fed(stops, ["Hello", " there", "!"]) == ["Hello", " there", "!", ""]
    assert not stops.matched


def test_the_reply_ends_before_a_sequence_split_over_pieces():
    stops = StopSequences(["User:"])
    # "Us" may start the sequence: held back until "er:" says that it does.
    assert fed(stops, ["Fine. Us", "er: and", " more"]) == ["Fine. ", "", "", ""]
    assert stops.matched


def test_a_start_that_does_not_go_on_is_let_through():
    stops = StopSequences(["\n\n"])
    assert fed(stops, ["one\n", "two\n", ""]) == ["one", "\ntwo", "", "\n"]
    assert not stops.matched


def test_the_earliest_of_several_sequences_ends_the_reply():
    stops = StopSequences(["END", "\n"])
    assert stops.feed("a\nb END") == "a"
    assert stops.matched and stops.feed("more") == ""


def test_empty_sequences_stop_nothing():
    assert StopSequences(["", ""]).sequences == []
    assert fed(StopSequences([""]), ["a", "b"]) == ["a", "b", ""]


def test_reaching_a_sequence_closes_the_source():
    """The engine's stream is closed at the sequence: that is what stops its request."""
    closed = []

    async def source():
        try:
            for piece in ["Hi. ", "Q", ":", " next", " question"]:
                yield piece
        finally:
            closed.append(True)

    async def main() -> list[str]:
        return [piece async for piece in StopSequences(["Q:"]).cut(source())]

    assert asyncio.run(main()) == ["Hi. "]
    assert closed == [True]


@pytest.mark.parametrize("sequence", ["aab", "abab"])
def test_a_sequence_that_repeats_its_own_start_is_found(sequence: str):
    stops = StopSequences([sequence])
    out = "".join(stops.feed(char) for char in "xaaabababy") + stops.flush()
    text = "xaaabababy"
    assert out == text[: text.index(sequence)]
