"""Small factory fixtures: tiny real models, configs that use them, and a running Serve graph."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from serving.config import AppConfig  # noqa: E402
from serving.testing.graphs import PARTS  # noqa: E402
from serving.testing.probes import free_port  # noqa: E402
from serving.testing.tiny_gguf import write_gguf  # noqa: E402
from serving.testing.tiny_models import build_causal, build_seq2seq, tiny_config  # noqa: E402
from serving.worker_setup import RUNTIME_ENV  # noqa: E402
from tests.support import METRICS_PORT, graph_at  # noqa: E402


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="session")
def tiny_causal_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with room for thousands of tokens."""
    return build_causal(tmp_path_factory.mktemp("tiny-causal-long"), positions=24_576)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_causal: Path) -> Path:
    """The same tiny Llama as a GGUF file: the llama.cpp engine runs it."""
    return write_gguf(tiny_causal)


@pytest.fixture(scope="session", params=["transformers", "llama.cpp"])
def tiny_chat_source(request: pytest.FixtureRequest, tiny_causal: Path) -> Path:
    """The tiny Llama for each engine: its folder (transformers) or its GGUF file (llama.cpp)."""
    return tiny_causal if request.param == "transformers" else request.getfixturevalue("tiny_gguf")


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_seq2seq(tmp_path_factory.mktemp("tiny-seq2seq"))


@pytest.fixture
def tiny_app_config(tiny_causal: Path, tiny_seq2seq: Path) -> AppConfig:
    return tiny_config(tiny_causal, tiny_seq2seq)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, driven by Playwright (no browser download).

    Module scope: Playwright's sync API keeps an event loop running in this thread, so other
    modules' ``asyncio.run`` must not share it.
    """
    from tests.pages import CHROMIUM, LAUNCH_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make browser-deps` (Debian's chromium package).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def serve_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A local Ray cluster with Serve on a free port; yields the port."""
    import ray
    from ray import serve

    port = free_port()
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env=RUNTIME_ENV,  # as run.py starts the app
        _metrics_export_port=METRICS_PORT,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_graph(
    serve_instance: int, tiny_causal: Path, tiny_seq2seq: Path
) -> Callable[..., AbstractContextManager[str]]:
    """``with tiny_graph("/name", extra) as base_url:`` the tiny graph with ``extra`` overrides
    at that URL prefix of the session's Serve, healthy, and removed after."""

    def at(
        prefix: str,
        extra: dict | None = None,
        *,
        engine: str = "llama.cpp",
        parts: Collection[str] = PARTS,
    ) -> AbstractContextManager[str]:
        config = tiny_config(tiny_causal, tiny_seq2seq, serve_instance, extra=extra, engine=engine)
        return graph_at(config, prefix, parts)

    return at


@pytest.fixture(scope="session")
def tiny_app(tiny_graph) -> Iterator[str]:
    """The whole graph (page and API) on tiny models, at the root; yields the base URL."""
    with tiny_graph("") as base_url:
        yield base_url


LONG_REPLY_TOKENS = 20_000


@pytest.fixture(scope="session")
def long_app(tiny_graph, tiny_causal_long: Path) -> Iterator[str]:
    """A second graph whose chat model always writes 20000 tokens: replies long enough to stop.

    Its page is at /long and its API at /long/api, beside the tiny graph.
    """
    long_reply = {"max_new_tokens": LONG_REPLY_TOKENS, "min_new_tokens": LONG_REPLY_TOKENS}
    chat = {
        "model": {"source": str(write_gguf(tiny_causal_long)), "context_tokens": 24_576},
        "generation": long_reply,
    }
    with tiny_graph("/long", {"chat": chat}) as base_url:
        yield base_url
