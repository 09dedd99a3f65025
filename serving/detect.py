"""LanguageDetector deployment: which language a message is in (lingua; models ship in its wheel).

It knows more languages than the service speaks, so that a language the service does not
serve is never taken for one it does: a German message is German, not "not English, so
French". A message in a language that is not served, or too short or mixed to tell, is
read as English (not translated), and the detection says why. Code blocks are left out: the
words around them tell the language.
"""

from __future__ import annotations

from collections.abc import Collection

from lingua import ConfidenceValue, IsoCode639_1, Language, LanguageDetectorBuilder

from serving.config import DetectorSettings
from serving.events import Detection
from serving.languages import language
from serving.native_memory import limit_arenas, release_free_memory
from serving.sentences import without_code

ENGLISH = "en"


def _language(code: str) -> Language:
    return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))


def language_name(code: str) -> str:
    """The English name of ISO 639-1 ``code`` ("pl" -> "Polish"), or the code itself."""
    try:
        return _language(code).name.title()
    except (AttributeError, ValueError):
        return code or "This language"


class LanguageDetector:
    """Tells the served languages, English and the ``detector.known`` languages apart."""

    def __init__(self, settings: DetectorSettings, served: Collection[str] = ("fr",)) -> None:
        self.served = frozenset(served)
        self.settings = settings
        codes = sorted({ENGLISH, *settings.known, *self.served})
        limit_arenas(2)  # lingua loads its models on a thread per core
        self._lingua = (
            LanguageDetectorBuilder.from_languages(*(_language(code) for code in codes))
            .with_preloaded_language_models()
            .build()
        )
        release_free_memory()  # what decoding the model files left behind

    def read(self, text: str, conversation: str | None = None) -> Detection:
        """What ``text`` speaks. ``conversation``: the language the conversation has been in;
        a message too short or too mixed to tell its own ("Oui", "Merci !", "ok") continues
        in it when it is English or a served one, where it would otherwise be read as
        English, with a note that it was too short to tell."""
        found = self._read(text)
        if not found.confident and (conversation in self.served or conversation == ENGLISH):
            return Detection(conversation, reason="continued", confident=False)
        return found

    def _read(self, text: str) -> Detection:
        if not (prose := without_code(text)) and text.strip():
            # Code alone: the model reads it as it is, with no note; the conversation goes on
            # in its language.
            return Detection(ENGLISH, confident=False)
        text = prose
        values = self._lingua.compute_language_confidence_values(text)
        if not values:
            return Detection(ENGLISH, reason="unsure", confident=False)
        best = values[0]
        if best.value <= 0 or (len(values) > 1 and values[1].value == best.value):
            # No evidence (an emoji, digits) or a tie: lingua then lists the languages in an
            # order that changes with every detector built, so the first one means nothing.
            return Detection(ENGLISH, reason="unsure", confident=False)
        code = best.language.iso_code_639_1.name.lower()
        sure = best.value >= self.settings.min_confidence or self._leads(code, text, values)
        if code == ENGLISH:
            # What an unsure message is read as anyway: no note. But a weak reading ("D'accord"
            # is 0.30 English, 0.24 French) does not end a French conversation.
            return Detection(ENGLISH, confident=sure)
        if not sure:
            return Detection(ENGLISH, reason="unsure", confident=False)  # a guess is not named
        if code in self.served:
            return Detection(code)
        # Named, but on a word or two a guess: lingua gives "Sí" 0.52 Czech.
        told = len(text.split()) >= self.settings.lead_min_words
        return Detection(ENGLISH, heard=code, reason="unserved", confident=told)

    def _leads(self, code: str, text: str, values: list[ConfidenceValue]) -> bool:
        """Whether the likeliest language is a served one, or English, that clearly leads in
        a message long enough to judge (``detector.lead``): lingua gives plain English
        questions 0.27-0.36 ("How do I cook rice?", "Hello, how are you?"). For the unserved
        ones ``min_confidence`` holds: a guess at one would be named to the person."""
        best, runner_up = values[0].value, values[1].value if len(values) > 1 else 0.0
        settings = self.settings
        return (
            (code in self.served or code == ENGLISH)
            and len(text.split()) >= settings.lead_min_words
            and best >= settings.lead_min_confidence
            and best >= settings.lead * runner_up
        )

    def detect(self, text: str) -> str:
        """The language the turn speaks (a served one, or English)."""
        return self.read(text).language

    def check_health(self) -> None:
        """English and the examples that the page offers in each served language must read
        as themselves (a person who clicks one must get an answer in its language)."""
        samples = [(ENGLISH, "Hello, could you tell me how to get to the station, please?")]
        for code in sorted(self.served):
            samples += [(code, text) for text in language(code).examples_for_page]
        for code, text in samples:
            if (found := self.read(text).language) != code:
                raise RuntimeError(f"language detector reads {code} ({text!r}) as {found}")
