"""The benchmark: each layer of the stack against the chat model's own speed, in one run.

    make bench                      # the real offline models on both engines (docs/benchmark.md)
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
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.graph import PeakMemory, bench_config, deploy, redeploy_api, without_batching
from bench.launch import launch_to_ready
from bench.report import write_markdown, write_plot
from bench.scenarios import concurrency, french, layers, translation
from serving.chat import ChatModel
from serving.config import AppConfig
from serving.cpus import physical_cores, usable_cpus
from serving.testing.graphs import delete_graph
from serving.testing.probes import app_memory_mib, free_port
from serving.worker_setup import RUNTIME_ENV


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


def run_engine(config: AppConfig, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one engine: start-up, layers, concurrency, French, translation."""
    found: dict[str, Any] = {"chat_model": config.chat.model.source}
    startup = {"first_deploy_to_healthy_s": deploy(config)}
    startup["first_deploy_cache"] = "empty" if args.cold else "as found"
    delete_graph()
    startup["cached_deploy_to_healthy_s"] = deploy(config)
    found["startup"] = startup
    print(f"  start-up: {startup}", flush=True)
    direct = ChatModel(config.chat)  # the same engine and code path, in this process
    found["layers"] = asyncio.run(layers(direct, base_url, args))
    with PeakMemory() as memory:
        found["concurrency"] = asyncio.run(concurrency(base_url, args))
    found["memory"] = {**app_memory_mib(), "peak_mib": round(memory.peak_mib)}
    found["concurrency_direct"] = asyncio.run(concurrency(base_url, args, direct))
    del direct
    found["french"] = asyncio.run(french(base_url, args))
    found["translation"] = asyncio.run(translation(args, config.languages))
    if args.batching_off:
        print("  the same sweep with batching off:", flush=True)
        redeploy_api(without_batching(config))
        found["concurrency_no_batching"] = asyncio.run(concurrency(base_url, args))
        for level, row in found["concurrency"].items():
            off = found["concurrency_no_batching"][level]["aggregate_tokens_per_s"]
            row["batching_gain"] = row["aggregate_tokens_per_s"] / off
    delete_graph()
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
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "plot")},
        "engines": {},
    }
    # First, with the machine quiet: each engine's app started as `make run` starts it.
    # Twice: the second start finds what the first kept in the cache folder (the translator's
    # few-shot prompts, read once and then restored; transformers' converted weights).
    results["launch"] = {}
    for engine in engines:
        cache = workdir / f"launch-cache-{engine}" if args.cold else None
        config = bench_config(args, port, workdir, engine)
        starts = results["launch"][engine] = [launch_to_ready(config, workdir, cache)]
        starts.append(launch_to_ready(config, workdir, cache))
        starts[1]["cache"] = "as the first start left it"
        for found in starts:
            print(f"engine {engine}: run.py launched to ready: {found}", flush=True)
    started = time.perf_counter()
    # As run.py starts the app: the same workers' setup hook.
    ray.init(
        address="local", include_dashboard=False, logging_level="ERROR", runtime_env=RUNTIME_ENV
    )
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


def machine() -> dict[str, Any]:
    """What the run's seconds depend on: the CPUs this process may use (a container's or a
    taskset's share, not the host's), their physical cores and their model."""
    cpus = usable_cpus()
    return {
        "cpus": len(cpus),
        "physical_cores": physical_cores(cpus),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def cpu_model() -> str:
    """The CPU's name, so that runs on different machines are not compared by their seconds."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
        "translation_en_fr_speedup": ratio(["translation", "en-fr", "p50_s"], True),
        "translation_fr_en_speedup": ratio(["translation", "fr-en", "p50_s"], True),
        "aggregate_tokens_per_s_at_8": ratio(["concurrency", "8", "aggregate_tokens_per_s"])
        if "8" in fast["concurrency"]
        else float("nan"),
        "peak_memory": ratio(["memory", "peak_mib"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
