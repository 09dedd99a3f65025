"""The product's metrics reach Ray's Prometheus endpoint, beside Serve's own."""

from __future__ import annotations

import re
import time

import httpx

from tests.conftest import METRICS_PORT


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def test_turns_errors_latency_tokens_and_translation_are_scrapeable(tiny_app: str):
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    before = httpx.get(url, timeout=10).text
    french = {"message": "Bonjour, pouvez-vous m'aider à écrire une lettre ?", "history": []}
    done = httpx.post(f"{tiny_app}/api/chat", json=french, timeout=60).json()
    assert done["language"] == "fr"
    blank = httpx.post(f"{tiny_app}/api/chat", json={"message": " "}, timeout=60)
    assert blank.status_code == 422

    expected = {
        ("ray_polyglot_requests_total", (("language", "fr"), ("api", "http"))): 1,
        ("ray_polyglot_errors_total", (("code", "invalid_request"), ("api", "http"))): 1,
        ("ray_polyglot_time_to_first_token_seconds_count", (("language", "fr"),)): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "fr-en"),)): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "en-fr"),)): 1,
        ("ray_polyglot_generated_tokens_total", ()): done["usage"]["completion_tokens"],
        ("ray_serve_deployment_request_counter_total", (("deployment", "Router"),)): 2,
    }
    deadline = time.monotonic() + 60  # replicas push their metrics every few seconds
    while True:
        now = httpx.get(url, timeout=10).text
        grown = {
            key: _sample(now, key[0], **dict(key[1])) - _sample(before, key[0], **dict(key[1]))
            for key in expected
        }
        if all(grown[key] >= least for key, least in expected.items()):
            break
        assert time.monotonic() < deadline, f"metrics did not arrive: {grown}"
        time.sleep(1)
