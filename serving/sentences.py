"""Cut text into sentences, so each can be translated as soon as it closes.

Streamed replies are English; a user's message is cut with its language's own abbreviations
(``Sentences.of``, from serving/languages/).
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
    "3." that later becomes "3.5" is not cut early. A sentence that ends its line keeps one
    trailing newline, so the layout (paragraphs, lists) survives translation.
    """
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group(3) is None and not _ends_sentence(text, match.end(1), rules):
            continue
        end = match.end(1) if match.group(3) is None else match.start(3)
        sentence = text[start:end].strip()
        if sentence:
            sentences.append(sentence + ("\n" if "\n" in match.group(0) else ""))
        start = match.end()
    return sentences, text[start:]


def separator_after(sentence: str) -> str:
    """What goes between this sentence and the next one."""
    return "\n" if sentence.endswith("\n") else " "


def split_sentences(text: str, rules: Sentences = ENGLISH_RULES) -> list[str]:
    """All sentences of a finished text."""
    sentences, rest = split_complete(text, rules)
    return sentences + ([rest.strip()] if rest.strip() else [])


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


class SentenceBuffer:
    """Accumulates streamed pieces and hands back each sentence once it is closed.

    A sentence that runs on past ``max_chars`` without closing is handed back in clauses, so a
    listener (the translator) is never kept waiting for a full stop that may not come.
    """

    def __init__(self, max_chars: int = 300) -> None:
        self.max_chars = max_chars
        self._pending = ""

    def feed(self, piece: str) -> list[str]:
        sentences, self._pending = split_complete(self._pending + piece)
        while len(self._pending) > self.max_chars:
            clause, self._pending = cut_run_on(self._pending, self.max_chars)
            if clause:
                sentences.append(clause)
        return sentences

    def flush(self) -> str | None:
        rest, self._pending = self._pending.strip(), ""
        return rest or None
