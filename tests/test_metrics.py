"""The product's metrics reach Ray's Prometheus endpoint, beside Serve's own."""

from __future__ import annotations

import time

from tests.support import metric as _sample
from tests.support import metrics_text, post_chat


def test_turns_errors_latency_tokens_and_translation_are_scrapeable(tiny_app: str):
    before = metrics_text()
    french = "Bonjour, pouvez-vous m'aider à écrire une lettre ?"
    done = post_chat(tiny_app, french, history=[]).json()
    assert done["language"] == "fr"
    german = post_chat(tiny_app, "Kannst du mir bitte helfen, einen Brief zu schreiben?").json()
    assert german["language"] == "de" and german["reply"]  # a third language, its own tags
    blank = post_chat(tiny_app, " ")
    assert blank.status_code == 422

    expected = {
        ("ray_polyglot_requests_total", (("language", "fr"), ("api", "http"))): 1,
        ("ray_polyglot_errors_total", (("code", "invalid_request"), ("api", "http"))): 1,
        ("ray_polyglot_time_to_first_token_seconds_count", (("language", "fr"),)): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "fr-en"),)): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "en-fr"),)): 1,
        ("ray_polyglot_requests_total", (("language", "de"), ("api", "http"))): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "de-en"),)): 1,
        ("ray_polyglot_translation_seconds_count", (("direction", "en-de"),)): 1,
        ("ray_polyglot_generated_tokens_total", ()): done["usage"]["completion_tokens"],
        ("ray_serve_deployment_request_counter_total", (("deployment", "Router"),)): 3,
    }
    deadline = time.monotonic() + 60  # replicas push their metrics every few seconds
    while True:
        now = metrics_text()
        grown = {
            key: _sample(now, key[0], **dict(key[1])) - _sample(before, key[0], **dict(key[1]))
            for key in expected
        }
        if all(grown[key] >= least for key, least in expected.items()):
            break
        assert time.monotonic() < deadline, f"metrics did not arrive: {grown}"
        time.sleep(1)
