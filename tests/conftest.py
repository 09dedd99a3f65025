"""Small factory fixtures: tiny real models, configs that use them, and a running Serve graph."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.run import free_port, wait_healthy  # noqa: E402
from serving.config import AppConfig  # noqa: E402
from tests.tiny_gguf import write_gguf  # noqa: E402
from tests.tiny_models import build_causal, build_seq2seq, tiny_config  # noqa: E402


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


METRICS_PORT = free_port()  # Ray's Prometheus endpoint for the test cluster


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
        _metrics_export_port=METRICS_PORT,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_app(serve_instance: int, tiny_causal: Path, tiny_seq2seq: Path) -> str:
    """The whole graph (page and API) on tiny models; yields the base URL."""
    from ray import serve

    from serving.app import build_apps

    config = tiny_config(tiny_causal, tiny_seq2seq, serve_instance)
    for app in build_apps(config):
        serve.run(app.app, name=app.name, route_prefix=app.route_prefix)
    base_url = f"http://127.0.0.1:{serve_instance}"
    wait_healthy(base_url, timeout=120)
    return base_url


LONG_REPLY_TOKENS = 20_000


@pytest.fixture(scope="session")
def long_app(serve_instance: int, tiny_causal_long: Path, tiny_causal: Path, tiny_seq2seq: Path):
    """A second graph whose chat model always writes 20000 tokens: replies long enough to stop.

    Its page is at /long and its API at /long/api, beside the tiny graph.
    """
    from ray import serve

    from serving.app import build_api, build_ui

    long_reply = {"max_new_tokens": LONG_REPLY_TOKENS, "min_new_tokens": LONG_REPLY_TOKENS}
    config = tiny_config(
        tiny_causal,
        tiny_seq2seq,
        serve_instance,
        extra={
            "chat": {
                "model": {"source": str(write_gguf(tiny_causal_long)), "context_tokens": 24_576},
                "generation": long_reply,
            },
            "ui": {"api_url": f"ws://127.0.0.1:{serve_instance}/long/api/chat"},
        },
    )
    serve.run(build_api(config), name="long-api", route_prefix="/long/api")
    serve.run(build_ui(config), name="long-ui", route_prefix="/long")
    base_url = f"http://127.0.0.1:{serve_instance}/long"
    wait_healthy(base_url, timeout=120)
    return base_url
