"""Cut text into sentences, so each can be translated as soon as it closes.

Streamed replies are English; a user's message is cut with its language's own abbreviations
(``Sentences.of``, from serving/languages/). Code (a fenced block) is not prose: it comes out
as ``Verbatim``, to be passed on exactly as written, and as soon as it is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words whose trailing period does not end a sentence.
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "u.s",
        "no",
        "fig",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
    ]
)

# A terminator run (with closing quotes/brackets), then whitespace: a candidate boundary.
_BOUNDARY = re.compile(r"([.!?…]+[\"')\]]*)(\s+)|(\n\s*)")
# A line that opens a code block (CommonMark: up to 3 spaces, then 3 or more ` or ~).
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)
# Inline code (`x ** 2`), within a sentence.
INLINE_CODE = re.compile(r"(`+).+?\1")


@dataclass(frozen=True)
class Verbatim:
    """Text to pass on as it was written, never translated: a code block, or part of one."""

    text: str


Segment = str | Verbatim  # a sentence to translate (it may end with its line break), or code


@dataclass(frozen=True)
class Sentences:
    """What ends a sentence in one language: its abbreviations, and whether a number's period
    makes an ordinal (German "am 3. Mai")."""

    abbreviations: frozenset[str] = ABBREVIATIONS
    ordinal_dot: bool = False

    @classmethod
    def of(cls, code: str) -> Sentences:
        if code == "en":
            return ENGLISH_RULES
        from serving.languages import language

        spec = language(code)
        return cls(frozenset(spec.abbreviations), spec.ordinal_dot)  # not English's: 'no.'


ENGLISH_RULES = Sentences()


def _ends_sentence(text: str, punct_end: int, rules: Sentences = ENGLISH_RULES) -> bool:
    before = text[:punct_end].rstrip("\"')]")
    if not before.endswith("."):
        return True  # ! ? … always close
    word = before[:-1].rsplit(None, 1)[-1] if before[:-1].strip() else ""
    word = word.lstrip("(\"'").lower()
    if word in rules.abbreviations:
        return False
    line_start = text.rfind("\n", 0, punct_end) + 1
    if word.isdigit() and not text[line_start : punct_end - len(word) - 1].strip():
        return False  # a numbered list item such as "2. Sleep more."
    if word.isdigit() and rules.ordinal_dot and not text[punct_end:].lstrip().startswith("\n"):
        return False  # an ordinal such as "am 3. Mai"
    return not (len(word) == 1 and word.isalpha())  # initials such as "J. Smith"


def split_complete(text: str, rules: Sentences = ENGLISH_RULES) -> tuple[list[str], str]:
    """Split ``text`` into closed sentences and the unfinished rest.

    A sentence counts as closed only once whitespace follows its terminator, so a streamed
    "3." that later becomes "3.5" is not cut early. A sentence that ends its line keeps its
    line break, two for a paragraph's end, so the layout (paragraphs, lists) survives
    translation; a line break at the very end of ``text`` waits for what follows it, which
    may be another.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group(3) is None and not _ends_sentence(text, match.end(1), rules):
            continue
        space = match.group(0)
        if "\n" in space and match.end() == len(text):
            break  # one line break, or the first of a paragraph's two
        end = match.end(1) if match.group(3) is None else match.start(3)
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence + "\n" * min(space.count("\n"), 2))
        start = match.end()
    return sentences, text[start:]


def separator_after(segment: Segment) -> str:
    """What goes between this segment's translation and the next one: its line breaks, or a
    space. Code carries its own."""
    if isinstance(segment, Verbatim):
        return ""
    breaks = len(segment) - len(segment.rstrip("\n"))
    return "\n" * breaks or " "


def split_sentences(text: str, rules: Sentences = ENGLISH_RULES) -> list[Segment]:
    """All sentences (and code blocks) of a finished text."""
    buffer = SentenceBuffer(max_chars=None, rules=rules)
    segments = buffer.feed(text)
    if rest := buffer.flush():
        segments.append(rest)
    return segments


# Where a run-on sentence may be cut, best first: after a clause mark, then at any space.
_CLAUSE = re.compile(r"[,;:]\s")
_SPACE = re.compile(r"\s")


def cut_run_on(text: str, limit: int) -> tuple[str, str]:
    """Cut an unfinished sentence longer than ``limit`` characters at a clause boundary."""
    head = text[:limit]
    for boundary in (_CLAUSE, _SPACE):
        ends = [match.end() for match in boundary.finditer(head)]
        if ends and ends[-1] > limit // 3:
            return text[: ends[-1]].strip(), text[ends[-1] :]
    return head.strip(), text[limit:]


def without_code(text: str) -> str:
    """``text``'s prose: its code blocks and inline code left out (they tell nothing of the
    language it is written in, and drown the words around them: "Que fait `git rebase
    --interactive HEAD~3` ?" read as English)."""
    prose = " ".join(s for s in split_sentences(text) if not isinstance(s, Verbatim))
    return " ".join(INLINE_CODE.sub(" ", prose).split())


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes the code block that ``fence`` opened (CommonMark's rule)."""
    match = re.fullmatch(r" {0,3}(`{3,}|~{3,})[ \t]*\n", line)
    return bool(match) and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)


class SentenceBuffer:
    """Accumulates streamed pieces and hands back each sentence once it is closed, and code
    (``Verbatim``) as it comes.

    A sentence that runs on past ``max_chars`` without closing is handed back in clauses, so a
    listener (the translator) is never kept waiting for a full stop that may not come.
    """

    def __init__(self, max_chars: int | None = 300, rules: Sentences = ENGLISH_RULES) -> None:
        self.max_chars = max_chars
        self.rules = rules
        self._pending = ""  # prose, not closed yet
        self._line_start = True  # whether _pending starts a line (where a code block may open)
        self._fence = ""  # the fence of the code block that is open now
        self._line = ""  # in a code block: its current line, as far as it has come
        self._opening = False  # that line is the block's first (the fence and its language)
        self._after_code = False  # a block has just closed: blank lines after it are kept

    def feed(self, piece: str) -> list[Segment]:
        segments: list[Segment] = []
        while piece:
            piece = self._code(piece, segments) if self._fence else self._prose(piece, segments)
        return segments

    def flush(self) -> str | None:
        rest, self._pending = self._pending.strip(), ""
        return rest or None

    def _prose(self, piece: str, segments: list[Segment]) -> str:
        """Takes the sentences that ``piece`` closes; returns what follows a code block's
        opening (from its fence on), if ``piece`` opens one."""
        if self._after_code:
            blank = piece[: len(piece) - len(piece.lstrip("\n"))]
            _add_code(segments, blank)
            piece = piece[len(blank) :]
            if not piece:
                return ""
            self._after_code = False
        text = self._pending + piece
        fence = next((m for m in _FENCE.finditer(text) if m.start() or self._line_start), None)
        if fence is not None:  # everything before the block is closed
            before = text[: fence.start()]
            sentences, rest = split_complete(before, self.rules)
            if rest.strip():
                breaks = rest[len(rest.rstrip()) :].count("\n")
                sentences.append(rest.strip() + "\n" * min(max(breaks, 1), 2))
            segments += sentences
            self._pending, self._fence, self._opening = "", fence.group(1), True
            return text[fence.start() :]
        sentences, rest = split_complete(text, self.rules)
        if len(rest) < len(text):
            self._line_start = text[: len(text) - len(rest)].rstrip(" \t").endswith("\n")
        while self.max_chars is not None and len(rest) > self.max_chars:
            clause, rest = cut_run_on(rest, self.max_chars)
            self._line_start = False
            if clause:
                sentences.append(clause)
        self._pending = rest
        segments += sentences
        return ""

    def _code(self, piece: str, segments: list[Segment]) -> str:
        """Passes on the code in ``piece``; returns what follows the block, if it closes."""
        position = 0
        while position < len(piece):
            end = piece.find("\n", position)
            if end < 0:
                self._line += piece[position:]
                position = len(piece)
                break
            line, self._line = self._line + piece[position : end + 1], ""
            position = end + 1
            if self._opening:
                self._opening = False
            elif _closes(line, self._fence):
                self._fence, self._line_start, self._after_code = "", True, True
                break
        _add_code(segments, piece[:position])
        return piece[position:]


def _add_code(segments: list[Segment], code: str) -> None:
    if not code:
        return
    if segments and isinstance(segments[-1], Verbatim):
        segments[-1] = Verbatim(segments[-1].text + code)
    else:
        segments.append(Verbatim(code))
