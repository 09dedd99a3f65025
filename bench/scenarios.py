"""The benchmark's scenarios on a deployed app: the layers, translation, concurrency, French."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from typing import Any

from bench.measure import (
    Sample,
    direct_pieces,
    gradio_sample,
    handle_pieces,
    percentile,
    socket_pieces,
    summarize,
    timed,
)
from serving.chat import ChatModel
from serving.events import ChatReply, Event
from serving.sentences import split_sentences
from serving.testing.graphs import api_ws_url

ENGLISH = [
    "Give me three tips to sleep better.",
    "What should I cook tonight with rice and vegetables?",
    "How do I start running as a beginner?",
    "Explain what a rainbow is.",
    "What are good habits for learning a language?",
    "How can I save money on groceries?",
    "Why is the sky blue?",
    "What is a healthy breakfast?",
]
FRENCH = [
    "Peux-tu me donner trois conseils pour mieux dormir ?",
    "Comment devenir un meilleur cuisinier ?",
    "Quels sont les avantages de la marche à pied ?",
    "Comment apprendre une nouvelle langue rapidement ?",
]


def _handle(deployment: str, stream: bool = False):
    from ray import serve

    handle = serve.get_deployment_handle(deployment, app_name="api")
    return handle.options(stream=True) if stream else handle


async def layers(direct: ChatModel, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Scenarios 1-4 on the same prompts, in a new random order each round, so that machine
    noise and warm caches favour no layer. ``direct``: the deployed ChatModel's class, with
    the same settings and engine, in this process."""
    import websockets
    from gradio_client import Client

    handle = _handle("ChatModel", stream=True)
    page = Client(base_url + "/", verbose=False)
    prompts = (ENGLISH * ((args.requests // len(ENGLISH)) + 1))[: args.requests]
    samples: dict[str, list[Sample]] = {"direct": [], "handle": [], "websocket": [], "gradio": []}
    order = random.Random(args.seed)
    async with websockets.connect(api_ws_url(base_url), max_size=None) as socket_:
        clients = {
            "direct": lambda prompt: timed(direct_pieces(direct, prompt)),
            "handle": lambda prompt: timed(handle_pieces(handle, prompt)),
            "websocket": lambda prompt: timed(socket_pieces(socket_, prompt)),
            "gradio": lambda prompt: asyncio.to_thread(gradio_sample, page, prompt),
        }
        for round_, prompt in enumerate(["Hello!", *prompts]):  # the first round warms up
            names = list(clients)
            order.shuffle(names)
            for name in names:
                sample = await clients[name](prompt)
                if round_:
                    samples[name].append(sample)
            print(f"  layers {round_}/{len(prompts)}", flush=True)
    page.close()
    summary = {name: summarize(found, args.tokens) for name, found in samples.items()}
    limit = summary["direct"]
    for row in summary.values():
        row["ttft_over_direct_ms"] = row["ttft_p50_ms"] - limit["ttft_p50_ms"]
        row["ttft_ratio"] = row["ttft_p50_ms"] / limit["ttft_p50_ms"]
        row["itl_ratio"] = row["itl_p50_ms"] / limit["itl_p50_ms"]
    return summary


async def translation(args: argparse.Namespace, languages: list[str]) -> dict[str, Any]:
    """One sentence at a time through the translator's handle, French to English and back:
    seconds per sentence. Then every served language both ways, one sentence each in turn,
    twice over, as people writing in several languages at once use it: a translator that
    cannot keep every language's few-shot prompt reads some of them again for each sentence."""
    from serving.languages import language

    handle = _handle("Translator")
    rows = {}
    for direction, sentences in (("fr-en", FRENCH), ("en-fr", ENGLISH)):
        source, target = direction.split("-")
        await handle.translate.remote(sentences[0], source, target)  # warm up
        times = []
        for sentence in (sentences * 4)[: args.sentences]:
            started = time.perf_counter()
            await handle.translate.remote(sentence, source, target)
            times.append(time.perf_counter() - started)
        rows[direction] = {"sentences": len(times), "p50_s": percentile(times, 0.5)}
    times = []
    for _ in range(2):
        for index, code in enumerate(languages):
            english = ENGLISH[index % len(ENGLISH)]
            ways = [(language(code).examples_for_page[0], code, "en"), (english, "en", code)]
            for sentence, source, target in ways:
                started = time.perf_counter()
                await handle.translate.remote(sentence, source, target)
                times.append(time.perf_counter() - started)
    if times:
        rows["in turn"] = {
            "languages": len(languages),
            "sentences": len(times),
            "p50_s": percentile(times, 0.5),
            "max_s": max(times),
        }
    return rows


async def concurrency(
    base_url: str, args: argparse.Namespace, direct: ChatModel | None = None
) -> dict[str, Any]:
    """N conversations at once over the WebSocket API, several turns each. With ``direct``,
    the same conversations call ``ChatModel.stream`` in this process instead: the engine's
    own limit at each load, with no Serve, router or socket in the way."""
    import websockets

    sweep: dict[str, Any] = {}

    async def conversation(index: int, out: list[Sample], errors: list[str]) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if direct is None:
                socket_ = await stack.enter_async_context(
                    websockets.connect(api_ws_url(base_url), max_size=None)
                )
            for turn in range(args.turns):
                prompt = ENGLISH[(index + turn) % len(ENGLISH)]
                pieces = direct_pieces(direct, prompt) if direct else socket_pieces(socket_, prompt)
                try:
                    out.append(await timed(pieces))
                except RuntimeError as exc:
                    errors.append(str(exc))

    for level in [int(n) for n in args.concurrency.split(",")]:
        samples: list[Sample] = []
        errors: list[str] = []
        started = time.perf_counter()
        await asyncio.gather(*(conversation(i, samples, errors) for i in range(level)))
        wall = time.perf_counter() - started
        row = summarize(samples, args.tokens) if samples else {}
        row.update(
            concurrency=level,
            wall_s=wall,
            aggregate_tokens_per_s=len(samples) * args.tokens / wall,
            errors=len(errors),
            error_messages=sorted(set(errors)),
        )
        sweep[str(level)] = row
        path = "in-process" if direct else "WebSocket"
        print(f"  concurrency {level} ({path}): {row['aggregate_tokens_per_s']:.1f} tokens/s")
        for message in row["error_messages"]:
            print(f"    error: {message}")
    one = sweep[next(iter(sweep))]["aggregate_tokens_per_s"]
    for row in sweep.values():
        row["gain_over_one"] = row["aggregate_tokens_per_s"] / one
    return sweep


async def french(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """First French text: sentence streaming (the API) against translate-after-reply (the seeds).

    The baseline runs the seeds' steps through the same deployments' handles: detect, translate
    the message, generate the whole reply, translate the whole reply; its first text is the end.
    Replies are greedy and of fixed length, so both paths translate the same English reply.
    """
    import websockets

    detector, translator = _handle("LanguageDetector"), _handle("Translator")
    chat = _handle("ChatModel", stream=True)
    rows = []
    for prompt in (FRENCH * 4)[: args.french]:
        events: list[Event] = []
        async with websockets.connect(api_ws_url(base_url), max_size=None) as socket_:
            streamed = await timed(socket_pieces(socket_, prompt, events))
        started = time.perf_counter()
        await detector.detect.remote(prompt)
        message_en = await translator.translate.remote(prompt, "fr", "en")
        reply = ChatReply(chat.stream.remote([], message_en))
        await reply.prompt()
        reply_en = "".join([piece async for piece in reply.texts()]).strip()
        await translator.translate.remote(reply_en, "en", "fr")
        after = time.perf_counter() - started
        done = events[-1]
        rows.append(
            {
                "prompt": prompt,
                "sentences": len(split_sentences(done.reply_en)),
                "same_english_reply": done.reply_en == reply_en,
                "streaming_first_text_s": streamed.ttft,
                "streaming_done_s": streamed.total,
                "translate_after_reply_first_text_s": after,
                "speedup": after / streamed.ttft,
            }
        )
        print(f"  french: first text {streamed.ttft:.1f} s vs {after:.1f} s", flush=True)
    return {"prompts": rows}
