"""LanguageDetector deployment: tells French from English with lingua (models ship in its wheel)."""

from __future__ import annotations

from typing import Literal

from lingua import Language, LanguageDetectorBuilder

Lang = Literal["en", "fr"]


class LanguageDetector:
    """Detects whether a message is French or English; anything undecided counts as English."""

    def __init__(self) -> None:
        self._lingua = (
            LanguageDetectorBuilder.from_languages(Language.ENGLISH, Language.FRENCH)
            .with_preloaded_language_models()
            .build()
        )

    def detect(self, text: str) -> Lang:
        return "fr" if self._lingua.detect_language_of(text) == Language.FRENCH else "en"

    def check_health(self) -> None:
        if self.detect("Bonjour, comment allez-vous aujourd'hui ?") != "fr":
            raise RuntimeError("language detector gives wrong answers")
