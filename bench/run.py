"""The benchmark: each layer of the stack against the chat model's own speed, in one run.

    make bench                      # the real offline models on both engines (the README's numbers)
    make bench ARGS="--tiny"        # tiny local models: exercises the script in a minute or two
    make bench ARGS="--engines llama.cpp"   # one engine only

Every table has an engine column: llama.cpp and transformers run the same GGUF files, prompts
and code path, one after the other on the same Ray cluster, so their ratios compare like with
like.

Writes bench/results.json, bench/results.md and assets/bench_concurrency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

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
from bench.report import write_markdown, write_plot
from serving.config import AppConfig, load_config
from serving.sentences import split_sentences

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny local models (a quick check)")
    parser.add_argument("--requests", type=int, default=8, help="requests per layer")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per reply (fixed)")
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent conversations")
    parser.add_argument("--turns", type=int, default=2, help="turns per conversation in the sweep")
    parser.add_argument("--french", type=int, default=4, help="French prompts")
    parser.add_argument("--sentences", type=int, default=8, help="sentences translated alone")
    parser.add_argument(
        "--engines", default="llama.cpp,transformers", help="engines to run, in this order"
    )
    parser.add_argument(
        "--batching-off", action="store_true", help="also run the sweep with batching off"
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffles the layers' order per round")
    parser.add_argument("--cold", action="store_true", help="also time a start with no cache")
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--plot", default="assets/bench_concurrency.png")
    return parser.parse_args(argv)


def free_port() -> int:
    """A TCP port nobody listens on now (for Serve, metrics, test servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_config(args: argparse.Namespace, port: int, workdir: Path, engine: str) -> AppConfig:
    """Greedy replies of exactly ``--tokens`` tokens, so every layer does the same work; every
    model on ``engine``."""
    fixed = {
        "chat": {
            "generation": {
                "do_sample": False,
                "max_new_tokens": args.tokens,
                "min_new_tokens": args.tokens,
            }
        },
        "http": {"port": port},
    }
    if args.tiny:
        from tests.tiny_models import build_causal, build_seq2seq, tiny_config

        causal, seq2seq = workdir / "causal", workdir / "seq2seq"
        if not causal.exists():
            build_causal(causal, positions=4096)
            build_seq2seq(seq2seq)
        return tiny_config(causal, seq2seq, port, extra=fixed, engine=engine)
    for role in ("chat", "translate_fr_en", "translate_en_fr"):
        fixed.setdefault(role, {})["model"] = {"engine": engine}
    return load_config("offline", overrides=fixed)


def wait_healthy(base_url: str, timeout: float = 900) -> None:
    """Poll ``/api/healthz`` until it answers 200 (the tests use it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/api/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{base_url} was not healthy after {timeout} s")


def deploy(config: AppConfig, base_url: str) -> float:
    """Deploy both applications; seconds until /api/healthz says every deployment is healthy."""
    from ray import serve

    from serving.app import build_apps

    started = time.perf_counter()
    for app in build_apps(config):
        serve.run(app.app, name=app.name, route_prefix=app.route_prefix, blocking=False)
    wait_healthy(base_url)
    return time.perf_counter() - started


def without_batching(config: AppConfig) -> AppConfig:
    """The same config with every model generating alone (max_batch_size 1)."""
    off = {"batching": {"max_batch_size": 1}}
    data = config.model_dump()
    for role in ("chat", "translate_fr_en", "translate_en_fr"):
        data[role].update(off)
    return AppConfig.model_validate(data)


def redeploy_api(config: AppConfig, base_url: str) -> None:
    """The API application upgraded in place (the page stays as it is)."""
    from ray import serve

    from serving.app import build_api

    serve.run(build_api(config), name="api", route_prefix="/api")
    wait_healthy(base_url)


def app_memory_mib() -> dict[str, float]:
    """Proportional set size of every process of the local Ray cluster (the whole app)."""
    import psutil

    total, counted = 0.0, 0
    for process in psutil.Process().children(recursive=True):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += getattr(info, "pss", info.rss) / 2**20
        counted += 1
    return {"total_mib": round(total), "processes": counted}


async def layers(config: AppConfig, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Scenarios 1-4 on the same prompts, in a new random order each round, so that machine
    noise and warm caches favour no layer."""
    import websockets
    from gradio_client import Client
    from ray import serve

    from serving.chat import ChatModel

    direct = ChatModel(config.chat)  # the same engine and code path, in this process
    handle = serve.get_deployment_handle("ChatModel", app_name="api").options(stream=True)
    page = Client(base_url + "/", verbose=False)
    ws_url = base_url.replace("http://", "ws://") + "/api/chat"
    prompts = (ENGLISH * ((args.requests // len(ENGLISH)) + 1))[: args.requests]
    samples: dict[str, list[Sample]] = {"direct": [], "handle": [], "websocket": [], "gradio": []}
    order = random.Random(args.seed)
    async with websockets.connect(ws_url, max_size=None) as socket_:
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


class PeakMemory:
    """Samples the whole app's PSS every second in a thread; ``peak_mib`` is the highest seen."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak_mib = max(self.peak_mib, app_memory_mib()["total_mib"])

    def __enter__(self) -> PeakMemory:
        self.peak_mib = app_memory_mib()["total_mib"]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def translation(args: argparse.Namespace) -> dict[str, Any]:
    """One sentence at a time through each translator's handle: seconds per sentence."""
    from ray import serve

    rows = {}
    for name, sentences in (("TranslatorFrEn", FRENCH), ("TranslatorEnFr", ENGLISH)):
        handle = serve.get_deployment_handle(name, app_name="api")
        await handle.translate.remote(sentences[0])  # warm up
        times = []
        for sentence in (sentences * 4)[: args.sentences]:
            started = time.perf_counter()
            await handle.translate.remote(sentence)
            times.append(time.perf_counter() - started)
        rows[name] = {"sentences": len(times), "p50_s": percentile(times, 0.5)}
    return rows


async def concurrency(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """N conversations at once over the WebSocket API, several turns each."""
    import websockets

    ws_url = base_url.replace("http://", "ws://") + "/api/chat"
    sweep: dict[str, Any] = {}

    async def conversation(index: int, out: list[Sample], errors: list[str]) -> None:
        async with websockets.connect(ws_url, max_size=None) as socket_:
            for turn in range(args.turns):
                prompt = ENGLISH[(index + turn) % len(ENGLISH)]
                try:
                    out.append(await timed(socket_pieces(socket_, prompt)))
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
        )
        sweep[str(level)] = row
        print(f"  concurrency {level}: {row['aggregate_tokens_per_s']:.1f} tokens/s", flush=True)
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
    from ray import serve

    detector = serve.get_deployment_handle("LanguageDetector", app_name="api")
    fr_en = serve.get_deployment_handle("TranslatorFrEn", app_name="api")
    en_fr = serve.get_deployment_handle("TranslatorEnFr", app_name="api")
    chat = serve.get_deployment_handle("ChatModel", app_name="api").options(stream=True)
    ws_url = base_url.replace("http://", "ws://") + "/api/chat"
    rows = []
    for prompt in (FRENCH * 4)[: args.french]:
        events: list[dict] = []
        async with websockets.connect(ws_url, max_size=None) as socket_:
            streamed = await timed(socket_pieces(socket_, prompt, events))
        started = time.perf_counter()
        await detector.detect.remote(prompt)
        message_en = await fr_en.translate.remote(prompt)
        english = [piece async for piece in chat.stream.remote([], message_en)]
        reply_en = "".join(piece for piece in english if isinstance(piece, str)).strip()
        await en_fr.translate.remote(reply_en)
        after = time.perf_counter() - started
        done = events[-1]
        rows.append(
            {
                "prompt": prompt,
                "sentences": len(split_sentences(done["reply_en"])),
                "same_english_reply": done["reply_en"] == reply_en,
                "streaming_first_text_s": streamed.ttft,
                "streaming_done_s": streamed.total,
                "translate_after_reply_first_text_s": after,
                "speedup": after / streamed.ttft,
            }
        )
        print(f"  french: first text {streamed.ttft:.1f} s vs {after:.1f} s", flush=True)
    return {"prompts": rows}


def run_engine(config: AppConfig, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one engine: start-up, layers, concurrency, French, translation."""
    from ray import serve

    found: dict[str, Any] = {"chat_model": config.chat.model.source}
    startup = {"first_deploy_to_healthy_s": deploy(config, base_url)}
    startup["first_deploy_cache"] = "empty" if args.cold else "as found"
    for app in ("ui", "api"):
        serve.delete(app)
    startup["cached_deploy_to_healthy_s"] = deploy(config, base_url)
    found["startup"] = startup
    print(f"  start-up: {startup}", flush=True)
    found["layers"] = asyncio.run(layers(config, base_url, args))
    with PeakMemory() as memory:
        found["concurrency"] = asyncio.run(concurrency(base_url, args))
    found["memory"] = {**app_memory_mib(), "peak_mib": round(memory.peak_mib)}
    found["french"] = asyncio.run(french(base_url, args))
    found["translation"] = asyncio.run(translation(args))
    if args.batching_off:
        print("  the same sweep with batching off:", flush=True)
        redeploy_api(without_batching(config), base_url)
        found["concurrency_no_batching"] = asyncio.run(concurrency(base_url, args))
        for level, row in found["concurrency"].items():
            off = found["concurrency_no_batching"][level]["aggregate_tokens_per_s"]
            row["batching_gain"] = row["aggregate_tokens_per_s"] / off
    for app in ("ui", "api"):
        serve.delete(app)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workdir = Path(tempfile.mkdtemp(prefix="polyglot-bench-"))
    if args.cold:  # an empty weights cache: transformers converts the GGUF files again
        os.environ["POLYGLOT_CACHE"] = str(workdir / "cache")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]

    import ray
    from ray import serve

    results: dict[str, Any] = {
        "mode": "tiny" if args.tiny else "offline",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plot")},
        "engines": {},
    }
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    results["ray_start_s"] = time.perf_counter() - started
    try:
        for engine in engines:
            print(f"engine {engine}:", flush=True)
            config = bench_config(args, port, workdir, engine)
            results["engines"][engine] = run_engine(config, base_url, args)
    finally:
        serve.shutdown()
        ray.shutdown()
    results["comparison"] = compare(results["engines"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    markdown = write_markdown(results, out.with_suffix(".md"))
    write_plot(results, Path(args.plot))
    print(markdown)
    return 0


def compare(engines: dict[str, Any]) -> dict[str, float]:
    """The issue's targets as ratios of llama.cpp over transformers, measured in this run."""
    fast, slow = engines.get("llama.cpp"), engines.get("transformers")
    if not fast or not slow:
        return {}

    def ratio(path: list[str], inverse: bool = False) -> float:
        a, b = fast, slow
        for key in path:
            a, b = a[key], b[key]
        return b / a if inverse else a / b

    return {
        "websocket_decode_tokens_per_s": ratio(["layers", "websocket", "decode_tokens_per_s"]),
        "translation_en_fr_speedup": ratio(["translation", "TranslatorEnFr", "p50_s"], True),
        "translation_fr_en_speedup": ratio(["translation", "TranslatorFrEn", "p50_s"], True),
        "aggregate_tokens_per_s_at_8": ratio(["concurrency", "8", "aggregate_tokens_per_s"])
        if "8" in fast["concurrency"]
        else float("nan"),
        "peak_memory": ratio(["memory", "peak_mib"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
