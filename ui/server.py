"""ChatUI deployment: the Gradio page in a Serve ingress (one replica: sessions live in memory).

Gradio is imported in the replica only, where the page is built: the process that deploys the
graph (`run.py`, `serve run`) does not spend the 4 s and ~40 MB that importing it costs.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from serving.cache import secret_file
from serving.config import UISettings
from serving.security import token_matches


def storage_secret(settings: UISettings) -> str:
    """The configured key, else one made once and kept beside the model cache."""
    return settings.storage_secret or secret_file("browser-state.key")


def password_check(token: str):
    """Gradio's login: any user name, the access token as the password."""

    def check(username: str, password: str) -> bool:
        return token_matches(password, token)

    return check


@serve.ingress()
class ChatUI:
    """Builds the page inside the replica: Gradio objects do not pickle."""

    def __init__(
        self,
        settings: UISettings,
        api_url: str,
        token: str | None = None,
        languages: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.api_url = api_url
        self.token = token  # the page's password, and what it shows the API
        self.languages = ["fr"] if languages is None else languages  # besides English

    def __serve_build_asgi_app__(self) -> FastAPI:
        import gradio as gr

        from ui.page import FOLD_JS, HEAD, THEME, build_demo

        demo = build_demo(
            self.api_url,
            self.settings.title,
            storage_secret(self.settings),
            self.token,
            storage_bytes=self.settings.browser_storage_kib * 1024,
            languages=self.languages,
        )
        login = {}
        if self.token:
            login = dict(
                auth=password_check(self.token),
                auth_message="Password: the access token that run.py printed "
                "(security.api_token). Any user name.",
            )
        return gr.mount_gradio_app(
            FastAPI(), demo, path="/", footer_links=[], head=HEAD, theme=THEME, js=FOLD_JS, **login
        )
