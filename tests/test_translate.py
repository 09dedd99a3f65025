import asyncio
from pathlib import Path

from serving.config import TranslatorSettings
from serving.model_config import GenerationSettings, ModelSpec
from serving.translate import Translator


def translator(folder: Path, **prompt) -> Translator:
    return Translator(
        TranslatorSettings(
            model=ModelSpec(source=str(folder)),
            prompt=prompt,
            generation=GenerationSettings(max_new_tokens=10, min_new_tokens=3),
        )
    )


def test_seq2seq_translates_sentence_by_sentence(tiny_seq2seq: Path):
    model = translator(tiny_seq2seq, prefix="translate French to English: ")
    prompt = model.engine.decode(model.prompt("Bonjour."))
    assert prompt.startswith("translate French to English: ")
    assert asyncio.run(model.translate("Bonjour. Il fait beau."))


def test_causal_few_shot_prompt_ends_on_the_target_label(tiny_chat_source: Path):
    model = translator(
        tiny_chat_source,
        examples=[("Bonjour", "Hello")],
        source_name="French",
        target_name="English",
    )
    prompt = model.engine.decode(model.prompt("Merci."))
    assert prompt.endswith("French: Bonjour\nEnglish: Hello\n\nFrench: Merci.\nEnglish:")


def test_examples_that_do_not_fit_go_first_and_the_sentence_stays(tiny_chat_source: Path):
    examples = [(f"Exemple numéro {i}, il fait beau.", f"Example number {i}.") for i in range(30)]
    model = translator(tiny_chat_source, examples=examples)
    whole = len(model.engine.encode("".join(f"French: {a}\nEnglish: {b}\n\n" for a, b in examples)))
    model.settings.model.max_input_tokens = whole // 2
    ids = model.prompt("Merci beaucoup.")
    prompt = model.engine.decode(ids)
    assert len(ids) <= whole // 2 - model.sampling.max_new_tokens
    assert "Exemple numéro 0," not in prompt and "Exemple numéro 29," in prompt
    assert prompt.endswith("French: Merci beaucoup.\nEnglish:")


def test_causal_translation_streams_one_line_per_sentence(tiny_chat_source: Path):
    model = translator(tiny_chat_source, examples=[("Bonjour", "Hello")])

    async def pieces() -> list[str]:
        return [piece async for piece in model.stream("Bonjour. Merci beaucoup.")]

    out = asyncio.run(pieces())
    assert " " in out  # the separator between the two translated sentences
    assert all("\n" not in piece for piece in out)
    assert "".join(out).strip()


def test_health_check_fails_once_the_weights_go_bad(tiny_seq2seq: Path):
    import pytest
    import torch

    from serving.errors import ModelUnavailableError

    model = translator(tiny_seq2seq)
    asyncio.run(model.check_health())  # a healthy encoder-decoder passes
    with torch.no_grad():
        next(model.engine.lm.model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelUnavailableError, match="not finite"):
        asyncio.run(model.check_health())
