"""The deployment graph, in one place: two Serve applications, the page at / and the API at /api.

``run.py`` calls ``build_apps``; a Serve config YAML points its ``import_path`` at ``api_app`` and
``ui_app`` with the same arguments, so ``serve run`` / ``serve deploy`` run the very same graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ray
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from serving.chat import ChatModel
from serving.config import AppConfig, load_config
from serving.detect import LanguageDetector
from serving.model_config import DeploymentSettings
from serving.router import Router
from serving.security import access_token
from serving.translate import Translator
from ui.server import ChatUI

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeApp:
    name: str
    route_prefix: str
    app: Application


def gpu_available() -> bool:
    if ray.is_initialized():
        return ray.cluster_resources().get("GPU", 0) > 0
    import torch

    return torch.cuda.is_available()


def deployment_settings(config: AppConfig) -> dict[str, dict[str, DeploymentSettings]]:
    """Each application's deployments and their settings: the graph's one list of names."""
    return {
        "ui": {"ChatUI": config.ui.deployment},
        "api": {
            "LanguageDetector": config.detector.deployment,
            "Translator": config.translator.deployment,
            "ChatModel": config.chat.deployment,
            "Router": config.router.deployment,
        },
    }


def build_api(config: AppConfig) -> Application:
    gpu = gpu_available()
    settings = deployment_settings(config)["api"]

    def deployment(cls: type, name: str):
        return serve.deployment(cls, name=name).options(**settings[name].serve_options(gpu, name))

    detector = deployment(LanguageDetector, "LanguageDetector").bind(
        config.detector, config.languages
    )
    translator = deployment(Translator, "Translator").bind(config.translator, config.languages)
    chat = deployment(ChatModel, "ChatModel").bind(config.chat)
    token = access_token(config)
    return deployment(Router, "Router").bind(detector, translator, chat, config.router, token)


def build_ui(config: AppConfig) -> Application:
    options = deployment_settings(config)["ui"]["ChatUI"].serve_options(False, "ChatUI")
    ui = serve.deployment(ChatUI, name="ChatUI").options(**options)
    return ui.bind(config.ui, config.api_url, access_token(config), config.languages)


def build_apps(config: AppConfig) -> list[ServeApp]:
    """The page first: it is up in seconds and says "loading models" while the API starts."""
    return [
        ServeApp("ui", "/", build_ui(config)),
        ServeApp("api", "/api", build_api(config)),
    ]


class AppArgs(BaseModel):
    """Arguments of the Serve config YAML's applications (``args:``)."""

    profile: str | None = Field(None, description="Profile name (offline, seed).")
    config: str | None = Field(None, description="Path to a YAML file of overrides.")
    port: int | None = Field(
        None, description="Serve HTTP port, when not 8000 (for the page's API URL)."
    )


def _config(args: AppArgs | dict) -> AppConfig:
    # Serve hands over a plain dict when it cannot see the annotation (postponed annotations).
    args = AppArgs.model_validate(args)
    overrides = {"http": {"port": args.port}} if args.port else None
    return load_config(args.profile, args.config, overrides)


def api_app(args: AppArgs | dict) -> Application:
    return build_api(_config(args))


def ui_app(args: AppArgs | dict) -> Application:
    return build_ui(_config(args))
