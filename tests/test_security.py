"""Who may use the service: the access token and the Origin check, alone and on a live graph."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import openai
import pytest
from websockets.exceptions import InvalidStatus

from serving.events import Event
from serving.security import access_token, bearer, origin_allowed, token_matches
from serving.testing.tiny_models import tiny_config
from tests.support import api_ws_url, one_turn, post_chat

TOKEN = "a-test-token-of-some-length"


def test_a_browser_socket_is_accepted_from_the_own_or_a_listed_origin_only():
    assert origin_allowed(None, "127.0.0.1:8000", [])  # not a browser
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", [])  # the page itself
    assert not origin_allowed("https://evil.example", "127.0.0.1:8000", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", [])  # another port
    assert origin_allowed(
        "https://chat.example.com/", "10.0.0.5:8000", ["https://chat.example.com"]
    )
    assert origin_allowed("https://anything.example", "h:1", ["*"])


def test_credentials_are_required_beyond_loopback_unless_turned_off(
    tiny_causal: Path, tiny_seq2seq: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("POLYGLOT_CACHE", str(tmp_path))

    def config(host: str, auth: str = "auto", token: str | None = None):
        extra = {"http": {"host": host}, "security": {"auth": auth, "api_token": token}}
        return tiny_config(tiny_causal, tiny_seq2seq, extra=extra)

    assert access_token(config("127.0.0.1")) is None
    assert access_token(config("0.0.0.0", "off")) is None
    assert access_token(config("127.0.0.1", "on", TOKEN)) == TOKEN
    made = access_token(config("0.0.0.0"))  # made once, kept, private
    assert made and len(made) >= 32 and access_token(config("0.0.0.0")) == made
    assert stat.S_IMODE(os.stat(tmp_path / "api.token").st_mode) == 0o600


def test_tokens_are_compared_whole():
    assert token_matches(None, None) and token_matches("anything", None)
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(None, TOKEN) and not token_matches(TOKEN[:-1], TOKEN)
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None


@pytest.fixture(scope="module")
def secure_app(tiny_graph) -> str:
    """The graph with security.auth on (as beyond loopback), page at /secure."""
    # Deployed once healthy: health stays open, as load balancers and the page ask it.
    with tiny_graph("/secure", {"security": {"auth": "on", "api_token": TOKEN}}) as base:
        yield base


def test_the_api_wants_the_token(secure_app: str):
    url = api_ws_url(secure_app)

    def turn(target: str, **connect) -> Event:
        return asyncio.run(one_turn(target, "Hello", **connect))[-1]

    with pytest.raises(InvalidStatus) as refused:
        turn(url)
    assert refused.value.response.status_code == 403
    signed = {"additional_headers": {"Authorization": f"Bearer {TOKEN}"}}
    assert turn(url, **signed).reply
    assert turn(api_ws_url(secure_app, TOKEN)).reply

    plain = post_chat(secure_app, "Hello")
    assert plain.status_code == 401 and plain.headers["www-authenticate"] == "Bearer"
    assert plain.json()["error"]["code"] == "unauthorized"
    signed = post_chat(secure_app, "Hello", TOKEN)
    assert signed.status_code == 200 and signed.json()["reply"]

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{secure_app}/api/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=f"{secure_app}/api/v1", api_key=TOKEN, max_retries=0)
    assert client.models.list().data[0].id == "polyglot-chat"


def test_the_page_asks_for_the_token_as_its_password(secure_app: str):
    from gradio_client import Client

    with pytest.raises(Exception, match="(?i)login|auth|credentials|401|403"):
        Client(secure_app + "/", verbose=False)
    client = Client(secure_app + "/", auth=("anyone", TOKEN), verbose=False)
    _, turns, _, _ = client.predict("Bonjour, comment allez-vous ?", [], api_name="/chat")
    assert turns and turns[-1]["language"] == "fr"  # the page's own client showed the token
