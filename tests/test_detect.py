import pytest

from serving.detect import LanguageDetector


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Bonjour, comment ça va ?", "fr"),
        ("Quel temps fait-il à Paris aujourd'hui ?", "fr"),
        ("merci", "fr"),
        ("Hello, how are you?", "en"),
        ("What is the capital of France?", "en"),
        ("👍", "en"),  # undecidable text counts as English
    ],
)
def test_detects_french_and_english(detector: LanguageDetector, text: str, language: str):
    assert detector.detect(text) == language


def test_health_check_passes(detector: LanguageDetector):
    detector.check_health()
