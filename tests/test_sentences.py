from hypothesis import given, settings
from hypothesis import strategies as st

from serving.sentences import SentenceBuffer, Verbatim, separator_after, split_sentences


def test_splits_on_terminators_but_not_abbreviations_or_numbers():
    text = "Hello Mr. Smith. I have 3.5 apples! Really? The U.S. is big. J. Doe agreed… Fine"
    assert split_sentences(text) == [
        "Hello Mr. Smith.",
        "I have 3.5 apples!",
        "Really?",
        "The U.S. is big.",
        "J. Doe agreed…",
        "Fine",
    ]


def test_newlines_close_sentences():
    assert split_sentences("A list:\n- one\n- two") == ["A list:\n", "- one\n", "- two"]


def test_a_paragraph_s_end_is_kept_as_two_line_breaks():
    segments = split_sentences("One. Two.\n\n\nThree:\n- four")
    assert segments == ["One.", "Two.\n\n", "Three:\n", "- four"]
    assert [separator_after(s) for s in segments[:3]] == [" ", "\n\n", "\n"]


def test_a_streamed_line_break_waits_for_the_next_one():
    buffer = SentenceBuffer()
    assert buffer.feed("It helps.\n") == []  # a paragraph's end would be "\n\n"
    assert buffer.feed("\nThen") == ["It helps.\n\n"]
    assert buffer.flush() == "Then"


REPLY_WITH_CODE = """Here's a function using the `*` operator:
```python
def multiply(a, b):
    return a * b  # the product.  Done!
```
It takes two numbers.

Use it like this:
~~~
print(multiply(5, 6))
```
still code
~~~
"""


def test_code_blocks_are_verbatim_and_the_prose_around_them_is_cut_into_sentences():
    assert split_sentences(REPLY_WITH_CODE) == [
        "Here's a function using the `*` operator:\n",
        Verbatim("```python\ndef multiply(a, b):\n    return a * b  # the product.  Done!\n```\n"),
        "It takes two numbers.\n\n",
        "Use it like this:\n",
        Verbatim("~~~\nprint(multiply(5, 6))\n```\nstill code\n~~~\n"),  # closed by its own
    ]


def test_a_fence_inside_a_line_is_prose_and_a_block_left_open_is_code_to_the_end():
    assert split_sentences("Type ``` to open. Then:\n```\nx = 1.\ny = 2") == [
        "Type ``` to open.",
        "Then:\n",
        Verbatim("```\nx = 1.\ny = 2"),
    ]


def test_code_is_handed_back_as_it_streams_not_when_its_block_closes():
    buffer = SentenceBuffer()
    assert buffer.feed("Like this:\n``") == ["Like this:\n"]
    assert buffer.feed("`py\nx") == [Verbatim("```py\nx")]
    assert buffer.feed(" = 1\n``") == [Verbatim(" = 1\n``")]
    assert buffer.feed("`\nDone. ") == [Verbatim("`\n"), "Done."]
    assert buffer.flush() is None


def test_numbered_list_markers_do_not_end_sentences():
    text = "Tips:\n1. Sleep more. It helps.\n2. Drink water."
    assert split_sentences(text) == ["Tips:\n", "1. Sleep more.", "It helps.\n", "2. Drink water."]


def test_buffer_releases_a_sentence_only_once_it_is_closed():
    buffer = SentenceBuffer()
    released = [buffer.feed(piece) for piece in ["It costs 3", ".", "5 euros", ". Then", " more."]]
    assert released == [[], [], [], ["It costs 3.5 euros."], []]
    assert buffer.flush() == "Then more."
    assert buffer.flush() is None


def test_a_run_on_sentence_is_released_in_clauses():
    buffer = SentenceBuffer(max_chars=40)
    words = "first we walk to the park, then we sit by the lake and we talk about books"
    released = [clause for word in words.split() for clause in buffer.feed(word + " ")]
    assert released == ["first we walk to the park,", "then we sit by the lake and we talk"]
    assert buffer.flush() == "about books"


def test_a_run_on_without_spaces_is_cut_at_the_limit():
    buffer = SentenceBuffer(max_chars=10)
    assert buffer.feed("x" * 25) == ["x" * 10, "x" * 10]
    assert buffer.flush() == "x" * 5


# Property-based: any English-like text, with code blocks, streamed in any pieces.
TEXT = st.lists(
    st.sampled_from(
        list("abcXY 12.,!?…:;\n'\"-`~")
        + ["Mr.", "U.S.", "3.5", " J. ", "e.g. ", "\n```py\n", "\n```\n", "\n~~~\n", "  "]
    ),
    max_size=120,
).map("".join)


def _letters(segments) -> str:
    return "".join("".join(getattr(s, "text", s) for s in segments).split())


def _joined(segments) -> list:
    """Consecutive pieces of code as one, and sentences without their line breaks."""
    out: list = []
    for segment in segments:
        if isinstance(segment, Verbatim) and out and isinstance(out[-1], Verbatim):
            out[-1] = Verbatim(out[-1].text + segment.text)
        else:
            out.append(segment if isinstance(segment, Verbatim) else segment.strip())
    return out


@settings(max_examples=400, deadline=None)
@given(TEXT, st.lists(st.integers(min_value=1, max_value=15), max_size=40))
def test_streamed_pieces_give_the_same_sentences_as_the_whole_text(text, cuts):
    buffer, sentences, position = SentenceBuffer(max_chars=10**6), [], 0
    for size in cuts:
        sentences += buffer.feed(text[position : position + size])
        position += size
    sentences += buffer.feed(text[position:])
    if rest := buffer.flush():
        sentences.append(rest)
    assert _joined(sentences) == _joined(split_sentences(text))
    assert _letters(sentences) == _letters([text])  # nothing lost, nothing added
    for block in _joined(sentences):
        assert not isinstance(block, Verbatim) or block.text in text  # code: as it was written


@settings(max_examples=400, deadline=None)
@given(TEXT, st.integers(min_value=20, max_value=80))
def test_run_on_text_is_cut_into_short_clauses_and_loses_nothing(text, limit):
    buffer = SentenceBuffer(max_chars=limit)
    sentences = buffer.feed(text)
    assert len(buffer._pending) <= limit  # what still waits is never longer than the limit
    if rest := buffer.flush():
        sentences.append(rest)
    assert _letters(sentences) == _letters([text])


def test_each_language_cuts_with_its_own_abbreviations_and_ordinals():
    from serving.sentences import Sentences

    german = "Wir treffen uns am 3. Oktober, z.B. im Park. Bis dann!"
    assert split_sentences(german, Sentences.of("de")) == [
        "Wir treffen uns am 3. Oktober, z.B. im Park.",
        "Bis dann!",
    ]
    assert split_sentences(german)[0] == "Wir treffen uns am 3."  # English rules: no ordinals
    spanish = "¿Qué tal? ¡Hola! Vivo en la Av. Central. Le dije que no. Vale."
    assert split_sentences(spanish, Sentences.of("es")) == [
        "¿Qué tal?",
        "¡Hola!",
        "Vivo en la Av. Central.",
        "Le dije que no.",  # English's "No." (number) is not Spanish's
        "Vale.",
    ]
