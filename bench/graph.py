"""The benchmark's app: its config, deployed and timed, upgraded, and its memory watched."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from serving.config import AppConfig, load_config
from serving.testing.graphs import deploy_graph
from serving.testing.probes import app_memory_mib, wait_read_ahead

ROLES = ("chat", "translator")


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
        from serving.testing.tiny_models import build_causal, build_seq2seq, tiny_config

        causal, seq2seq = workdir / "causal", workdir / "seq2seq"
        if not causal.exists():
            build_causal(causal, positions=4096)
            build_seq2seq(seq2seq)
        return tiny_config(causal, seq2seq, port, extra=fixed, engine=engine)
    for role in ROLES:
        fixed.setdefault(role, {})["model"] = {"engine": engine}
    return load_config("offline", overrides=fixed)


def deploy(config: AppConfig) -> float:
    """Deploy both applications; seconds until /api/healthz says every deployment is healthy.
    Returns once the translator has read every prompt ahead (after healthy, in the background),
    so that no measure counts those reads."""
    started = time.perf_counter()
    deploy_graph(config, read_ahead=False)
    healthy = time.perf_counter() - started
    wait_read_ahead("api")
    return healthy


def without_batching(config: AppConfig) -> AppConfig:
    """The same config with every model generating alone (max_batch_size 1)."""
    off = {"batching": {"max_batch_size": 1}}
    data = config.model_dump()
    for role in ROLES:
        data[role].update(off)
    return AppConfig.model_validate(data)


def redeploy_api(config: AppConfig) -> None:
    """The API application upgraded in place (the page stays as it is)."""
    deploy_graph(config, parts=("api",))


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
