"""The user languages the service can speak: one YAML file per language, beside this module.

Each file holds the language's names, the few-shot examples that the causal translator is
prompted with (both directions), the abbreviations that do not end a sentence, and the page's
examples. Which model translates a language is the profiles' business. All text was written
for this project (README.md here).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from serving.errors import ConfigError
from serving.model_config import StrictModel

FOLDER = Path(__file__).parent
ENGLISH = "en"  # the chat model's language: every other language is translated to and from it


class LanguageSpec(StrictModel):
    code: str = Field(pattern=r"^[a-z]{2}$", description="ISO 639-1 code.")
    name: str = Field(description="English name, as few-shot prompts label the language.")
    native: str = Field(description="The language's own name, as the page shows it.")
    greeting: str = Field(description="A call to write in this language, for the text box.")
    examples_for_page: list[str] = Field(min_length=1)
    examples: list[tuple[str, str]] = Field(
        min_length=2, description="(this language, English) pairs: the few-shot examples."
    )
    abbreviations: list[str] = Field(
        default_factory=list, description="Lowercase words whose period does not end a sentence."
    )
    ordinal_dot: bool = Field(
        False, description="A number's period marks an ordinal ('am 3. Mai'), not a sentence end."
    )

    @property
    def to_english_examples(self) -> list[tuple[str, str]]:
        return list(self.examples)

    @property
    def from_english_examples(self) -> list[tuple[str, str]]:
        return [(english, own) for own, english in self.examples]


def known_languages() -> list[str]:
    """The codes that have a file here."""
    return sorted(path.stem for path in FOLDER.glob("*.yaml"))


@cache
def language(code: str) -> LanguageSpec:
    """The language ``code``, or ``ConfigError`` naming the codes that exist."""
    path = FOLDER / f"{code}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"languages: '{code}' is not a language this service knows; "
            f"known: {', '.join(known_languages())}."
        )
    try:
        spec = LanguageSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError) as error:
        raise ConfigError(f"{path.name} is not a valid language file: {error}") from None
    if spec.code != code:
        raise ConfigError(f"{path.name} says it is '{spec.code}'.")
    return spec
