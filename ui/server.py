"""ChatUI deployment: the Gradio page in a Serve ingress (one replica: sessions live in memory)."""

from __future__ import annotations

import secrets

import gradio as gr
from fastapi import FastAPI
from ray import serve

from serving.cache import cache_root
from serving.config import UISettings
from ui.page import HEAD, build_demo


def storage_secret(settings: UISettings) -> str:
    """The configured key, else one made once and kept beside the model cache."""
    if settings.storage_secret:
        return settings.storage_secret
    path = cache_root() / "browser-state.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


@serve.ingress()
class ChatUI:
    """Builds the page inside the replica: Gradio objects do not pickle."""

    def __init__(self, settings: UISettings, api_url: str) -> None:
        self.settings = settings
        self.api_url = api_url

    def __serve_build_asgi_app__(self) -> FastAPI:
        demo = build_demo(self.api_url, self.settings.title, storage_secret(self.settings))
        return gr.mount_gradio_app(FastAPI(), demo, path="/", footer_links=[], head=HEAD)
