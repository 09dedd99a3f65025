"""`make eval`: how well the offline translator handles each language, how well the detector
tells short messages apart, and whether the offline chat model keeps to English.

For each language in serving/languages/ it translates the 40 pairs of eval/pairs/<code>.tsv
both ways with the offline profile's translator (Gemma 3 270M on llama.cpp, prompted with the
language's own few-shot examples, as the service prompts it) and reports:
- chrF (sacrebleu) of X->English and English->X against the references;
- the share of English->X outputs that lingua reads as X (a reply in the user's language);
- the share of the chat model's own list items (eval/pairs/list_items.txt), English->X, whose
  text after the title lingua reads as English (an item the translator copied);
- the service's detector on short messages: the first 1, 2, 3 and 5 words of each sentence,
  and the whole sentence (which min_confidence sends to English, which it takes for another),
  alone and in a conversation in that language (the request's ``language``), where the English
  sentences' starts show how often a turn in English still switches to English;
- the same detector on the sentences of eval/pairs/unserved.tsv, in the languages it knows
  but does not serve: how often it names them, and how often it takes one for a served
  language (which would translate the turn from the wrong language);
- the offline chat model's replies to English messages (the 40 English sentences of the
  pairs, the chat questions of eval/pairs/questions.txt and the questions about places of
  eval/pairs/places.txt, each asked 3 times with the profile's sampling), with the profile's
  opening exchanges and without them: the share that lingua does not read as English (an
  English reader gets the wrong language, and the translator no English to translate), that
  apologise instead of answering, and that max_new_tokens cut off.

A language qualifies for the offline profile when its X->English chrF is within 10 points of
French's and at least 95 % of its English->X outputs come back in it. Writes eval/results.json
and eval/results.md (the table in docs/languages.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from serving.config import load_config  # noqa: E402
from serving.detect import LanguageDetector  # noqa: E402
from serving.engine import Sampling, load_engine  # noqa: E402
from serving.events import ReplyInfo  # noqa: E402
from serving.languages import known_languages, language  # noqa: E402
from serving.translate import Parts, Translator  # noqa: E402

CHRF_MARGIN = 10  # points of X->English chrF below French's that a language may be
IN_LANGUAGE_SHARE = 0.95  # of English->X outputs that must come back in X
PREFIXES = (1, 2, 3, 5, None)  # words of a message the detector is given (None: all)
ASKED = 3  # times each English message goes to the chat model (it samples)
CHAT_AT_ONCE = 8  # its slots


def read_pairs(code: str, limit: int | None) -> list[tuple[str, str]]:
    lines = (HERE / "pairs" / f"{code}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [tuple(line.split("\t")) for line in lines if line.strip()]
    return pairs[:limit] if limit else pairs


def _lines(name: str) -> list[str]:
    """The non-empty lines of ``eval/pairs/<name>`` (``eval/pairs/README.md`` says what each
    file holds)."""
    lines = (HERE / "pairs" / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def read_list_items() -> list[str]:
    """English list items that have a title (``eval/pairs/README.md``)."""
    items = _lines("list_items.txt")
    return [line for line in items if (p := Parts.of(line)).titles and len(p.text.split()) >= 4]


def read_by_language(name: str) -> dict[str, list[str]]:
    """The texts of ``eval/pairs/<name>`` (a header, then ``code<TAB>text`` lines) by code:
    ``unserved.tsv``'s sentences in languages the detector knows but the service does not
    serve, ``short_replies.tsv``'s replies in the served ones."""
    lines = (HERE / "pairs" / name).read_text(encoding="utf-8").splitlines()[1:]
    by_code: dict[str, list[str]] = {}
    for code, sentence in (line.split("\t") for line in lines if line.strip()):
        by_code.setdefault(code, []).append(sentence)
    return by_code


async def translate_all(
    translator: Translator, texts: list[str], source: str, target: str, at_once: int
) -> list[str]:
    gate = asyncio.Semaphore(at_once)

    async def one(text: str) -> str:
        async with gate:
            return await translator.translate(text, source, target)

    return await asyncio.gather(*(one(text) for text in texts))


def _read_starts(
    detector: LanguageDetector,
    sentences: list[str],
    words: int | None,
    conversation: str | None = None,
) -> list:
    """The detector's reading of each sentence's first ``words`` words (None: all of it), in
    a conversation in ``conversation``'s language (None: a new one)."""
    return [
        detector.read(" ".join(sentence.split()[:words]) if words else sentence, conversation)
        for sentence in sentences
    ]


def detection(detector: LanguageDetector, code: str, sources: list[str]) -> dict:
    """The service's detector (every language with a file served, ``detector`` settings as
    configured) on the first 1, 2 and 3 words of each sentence and on the whole sentence: how
    often it reads the language, takes it for another one, or sends it to English (unsure)."""
    rows = {}
    for words in PREFIXES:
        found = _read_starts(detector, sources, words)
        right = sum(d.language == code for d in found)
        english = sum(d.reason == "unsure" or (d.language == "en" and not d.heard) for d in found)
        rows["all" if words is None else f"{words}w"] = {
            "read": right / len(found),
            "misdetected": (len(found) - right - english) / len(found),
            "to_english": english / len(found),
        }
    return rows


def in_conversation(
    detector: LanguageDetector, code: str, sources: list[str], english: list[str]
) -> dict:
    """The detector in a conversation in ``code`` (the request's ``language``), on the same
    starts: how often it reads them as ``code`` (a start too short to tell goes on in it), and
    how often it reads the English sentences' starts as English (the turn switches)."""
    rows = {}
    for words in PREFIXES:
        found = _read_starts(detector, sources, words, code)
        switched = _read_starts(detector, english, words, code)
        rows["all" if words is None else f"{words}w"] = {
            "read": sum(d.language == code for d in found) / len(found),
            "english_read_as_english": sum(d.language == "en" for d in switched) / len(switched),
        }
    return rows


def _share_read(
    detector: LanguageDetector, texts: list[str], code: str, conversation: str | None
) -> float | None:
    """The share of ``texts`` that the detector reads as ``code``."""
    found = [detector.read(text, conversation).language == code for text in texts]
    return round(statistics.fmean(found), 3) if found else None


def unserved_detection(detector: LanguageDetector, code: str, sentences: list[str]) -> dict:
    """The detector on the first 1, 2, 3, 5 words and the whole of sentences in an unserved
    language: how often it names the language, takes it for a served one, or neither (unsure,
    or another unserved language named: the turn is answered in English all the same)."""
    rows = {}
    for words in PREFIXES:
        found = _read_starts(detector, sentences, words)
        served = sum(d.language != "en" for d in found)
        named = sum(d.heard == code for d in found)
        rows["all" if words is None else f"{words}w"] = {
            "named": named / len(found),
            "taken_for_served": served / len(found),
            "neither": (len(found) - served - named) / len(found),
        }
    return rows


async def evaluate(args: argparse.Namespace) -> dict:
    import sacrebleu
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    config = load_config("offline")
    settings = config.translator  # the offline profile's: one model, every language, both ways
    spec = settings.model
    started = time.monotonic()
    engine = load_engine(spec, settings.batching, Sampling.of(settings.generation))
    print(f"translator: {spec.source} on {engine.name} ({time.monotonic() - started:.0f} s)")
    judge = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
    detector = LanguageDetector(config.detector, served=known_languages())

    translator = Translator(settings, args.languages, engine=lambda *_: engine)  # as served
    list_items = read_list_items()[: args.limit]
    replies = read_by_language("short_replies.tsv")

    results = {}
    for code in args.languages:
        spec_ = language(code)
        pairs = read_pairs(code, args.limit)
        sources, english = [p[0] for p in pairs], [p[1] for p in pairs]
        clock = time.monotonic()
        hyp_en = await translate_all(translator, sources, code, "en", args.at_once)
        hyp_xx = await translate_all(translator, english, "en", code, args.at_once)
        in_language = [_reads_as(judge, text, code) for text in hyp_xx]
        items = await translate_all(translator, list_items, "en", code, args.at_once)
        copied = [_reads_as(judge, Parts.of(item).text, "en") for item in items]
        results[code] = {
            "name": spec_.name,
            "pairs": len(pairs),
            "chrf_to_english": round(sacrebleu.corpus_chrf(hyp_en, [english]).score, 1),
            "chrf_from_english": round(sacrebleu.corpus_chrf(hyp_xx, [sources]).score, 1),
            "in_language": round(statistics.fmean(in_language), 3),
            "list_items_in_english": round(statistics.fmean(copied), 3) if copied else None,
            "seconds": round(time.monotonic() - clock, 1),
            "detector": detection(detector, code, sources),
            "in_conversation": in_conversation(detector, code, sources, english),
            "short_replies": {
                "alone": _share_read(detector, replies.get(code, []), code, None),
                "in_conversation": _share_read(detector, replies.get(code, []), code, code),
            },
            "samples": [
                {"source": s, "to_english": e, "english": r, "from_english": x}
                for s, e, r, x in list(zip(sources, hyp_en, english, hyp_xx, strict=True))[:3]
            ],
        }
        row = results[code]
        print(
            f"{code}: chrF {row['chrf_to_english']} -> en, {row['chrf_from_english']} <- en, "
            f"{row['in_language']:.0%} in {spec_.name} ({row['seconds']} s)",
            flush=True,
        )
    french = results.get("fr", {}).get("chrf_to_english")
    for row in results.values():
        reasons = []
        if french is not None and row["chrf_to_english"] < french - CHRF_MARGIN:
            reasons.append(f"X->English chrF {row['chrf_to_english']} < French's {french} - 10")
        if row["in_language"] < IN_LANGUAGE_SHARE:
            reasons.append(f"{row['in_language']:.0%} of replies in {row['name']} (< 95 %)")
        row["qualifies"] = french is not None and not reasons
        row["misses"] = reasons
    unserved = {
        code: unserved_detection(detector, code, sentences)
        for code, sentences in read_by_language("unserved.tsv").items()
    }
    # Judged among English and the served languages, where the chat model drifts, and without
    # names: with every language, "The capital of Portugal is Lisbon." reads as Latin.
    chat_judge = LanguageDetectorBuilder.from_iso_codes_639_1(
        *(getattr(IsoCode639_1, code.upper()) for code in ["en", *known_languages()])
    ).build()
    everyday = list(
        dict.fromkeys(
            english for code in args.languages for _, english in read_pairs(code, args.limit)
        )
    )
    prompts = {
        "everyday": everyday,
        "questions": _lines("questions.txt")[: args.limit],
        "places": _lines("places.txt")[: args.limit],
    }
    chat = await chat_replies(config, prompts, chat_judge)
    return {
        "translator": spec.source,
        "rules": {"chrf_margin": CHRF_MARGIN, "in_language_share": IN_LANGUAGE_SHARE},
        "languages": results,
        "list_items": len(list_items),
        "unserved": unserved,
        "chat": chat,
    }


async def _replies(model, messages: list[str]) -> list[tuple[str, str]]:
    """``model``'s reply to each message and why it ended, ``CHAT_AT_ONCE`` at a time."""
    gate = asyncio.Semaphore(CHAT_AT_ONCE)

    async def reply(message: str) -> tuple[str, str]:
        async with gate:
            items = [item async for item in model.stream([], message)]
        text = "".join(item for item in items if isinstance(item, str))
        return text, next(i.finish_reason for i in items if isinstance(i, ReplyInfo))

    return await asyncio.gather(*(reply(message) for message in messages))


async def chat_replies(config, messages: dict[str, list[str]], judge) -> dict:
    """The chat model's replies to ``messages`` (English), with the profile's opening exchanges
    and without them: the share that ``judge`` does not read as English, that apologise, and
    that ``max_new_tokens`` cut off."""
    from serving.chat import ChatModel

    results: dict[str, dict] = {}
    for label, settings in (
        ("as configured", config.chat),
        ("without the opening", config.chat.model_copy(update={"opening": []})),
    ):
        model = ChatModel(settings)
        results[label] = {}
        for name, texts in messages.items():
            asked = [text for text in texts for _ in range(ASKED)]
            replies = await _replies(model, asked)
            other = [
                (q, r)
                for q, (r, _) in zip(asked, replies, strict=True)
                if not _reads_as(judge, _without_names(r), "en")
            ]
            sorry = [r for r, _ in replies if re.search(r"\b(sorry|apologi[sz]e)", r, re.I)]
            results[label][name] = {
                "asked": len(asked),
                "not_english": round(len(other) / len(asked), 3),
                "messages_not_english": len({q for q, _ in other}),
                "apologising": round(len(sorry) / len(asked), 3),
                "cut_off": round(sum(end == "length" for _, end in replies) / len(asked), 3),
                "mean_characters": round(statistics.fmean(len(r) for r, _ in replies)),
                "samples": [{"message": q, "reply": r[:200]} for q, r in other[:3]],
            }
            print(f"chat model, {label}, {name}: {len(other)} of {len(asked)} not in English")
    return results


def _count(row: dict, share: str) -> str:
    return f"{round(row[share] * row['asked'])} of {row['asked']}"


def _without_names(text: str) -> str:
    """``text`` without its capitalised words: lingua read "The best museums in Paris are:
    The Louvre, Notre Dame de la Cité, and the Sainte-Chapelle." as French."""
    return " ".join(word for word in text.split() if not word[:1].isupper())


def _reads_as(judge, text: str, code: str) -> bool:
    """Whether lingua (``judge``) reads ``text`` as the language ``code``."""
    found = judge.detect_language_of(text)
    return found is not None and found.iso_code_639_1.name.lower() == code


def _by_length(
    intro: str, rows: dict[str, dict], shares: tuple[str, ...], legend: str
) -> list[str]:
    """A table of the detector's readings by message length (``PREFIXES``), a row a language:
    each cell the ``shares`` of that length, as "a / b / c"."""
    lines = [
        "",
        intro,
        "",
        "| language | 1 word | 2 words | 3 words | 5 words | sentence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for code, by_length in rows.items():
        cells = [
            " / ".join(f"{found[share]:.0%}" for share in shares) for found in by_length.values()
        ]
        lines.append(f"| {code} | {' | '.join(cells)} |")
    return [*lines, "", legend]


def table(report: dict) -> str:
    lines = [
        "| language | X→English chrF | English→X chrF | replies in X | list items left in "
        "English | offline | why not |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for code, row in report["languages"].items():
        copied = row.get("list_items_in_english")
        lines.append(
            f"| {row['name']} ({code}) | {row['chrf_to_english']} | {row['chrf_from_english']} "
            f"| {row['in_language']:.0%} | {'' if copied is None else f'{copied:.0%}'} "
            f"| {'yes' if row['qualifies'] else 'no'} | {'; '.join(row['misses'])} |"
        )
    lines += [
        "",
        f"List items: the {report.get('list_items', 0)} titled items of "
        "`eval/pairs/list_items.txt` (the offline chat model's own), English→X; share whose "
        "text after the title lingua reads as English.",
    ]
    languages = report["languages"]
    lines += _by_length(
        "The detector with every language above served (`detector` settings as configured): "
        "share of messages of 1, 2, 3, 5 words and whole sentences that it reads right, takes "
        "for another language, or answers in English as too short to tell.",
        {code: row["detector"] for code, row in languages.items()},
        ("read", "misdetected", "to_english"),
        "(read / taken for another / to English)",
    )
    lines += _by_length(
        "The same starts in a conversation in their language (the request's `language`): "
        "share read as that language (a start too short to tell goes on in it); and the "
        "English sentences' starts in that conversation: share read as English (the turn "
        "switches to English).",
        {code: row["in_conversation"] for code, row in languages.items()},
        ("read", "english_read_as_english"),
        "(read as the language / English starts read as English)",
    )
    lines += [
        "",
        'The short replies of `eval/pairs/short_replies.tsv` (ten a language: "Oui", '
        '"Sí", "Danke"): share read as their language, alone and in a conversation in it.',
        "",
        "| language | alone | in its conversation |",
        "| --- | --- | --- |",
    ]
    for code, row in languages.items():
        short = row.get("short_replies") or {}
        if short.get("alone") is not None:
            lines.append(f"| {code} | {short['alone']:.0%} | {short['in_conversation']:.0%} |")
    lines += _by_length(
        "The same detector on sentences in languages it knows but the service does not serve "
        "(`eval/pairs/unserved.tsv`): share that it names as that language (the turn is "
        "answered in English, and the page says why), takes for a served language, or "
        "neither (too short to tell, or named as another unserved language: answered in "
        "English all the same).",
        report.get("unserved", {}),
        ("named", "taken_for_served", "neither"),
        "(named / taken for a served language / neither)",
    )
    if chat := report.get("chat"):
        sets = chat[next(iter(chat))]
        lines += [
            "",
            f"The offline chat model's replies to English messages, each asked {ASKED} times "
            "(everyday: the 40 English sentences of the pairs; questions: "
            "`eval/pairs/questions.txt`; places: `eval/pairs/places.txt`): replies that "
            "lingua (English and the served languages, on the reply without its capitalised "
            "words, mostly names) does not read as English, with how many messages drew one; "
            "replies that apologise; replies that `max_new_tokens` cut off.",
            "",
            "| chat model | " + " | ".join(sets) + " |",
            "| --- |" + " --- |" * len(sets),
        ]
        for label, rows in chat.items():
            cells = [
                f"{_count(row, 'not_english')} not English ({row['messages_not_english']} of "
                f"{row['asked'] // ASKED} messages), {_count(row, 'apologising')} apologise, "
                f"{_count(row, 'cut_off')} cut off"
                for row in rows.values()
            ]
            lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", nargs="+", default=known_languages())
    parser.add_argument("--limit", type=int, help="pairs per language (default: all)")
    parser.add_argument("--at-once", type=int, default=4, help="translations in flight")
    args = parser.parse_args()
    report = asyncio.run(evaluate(args))
    (HERE / "results.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    (HERE / "results.md").write_text(table(report))
    print(table(report))


if __name__ == "__main__":
    main()
