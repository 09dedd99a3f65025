"""The graph (the page and the API) deployed on the running Serve at a URL prefix.

At the root its applications are ``ui`` at / and ``api`` at /api, as ``serving.app.build_apps``
names them; at ``/long`` they are ``long-ui`` at /long and ``long-api`` at /long/api.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlencode

from serving.config import AppConfig
from serving.testing.probes import wait_healthy, wait_read_ahead

PARTS = ("ui", "api")  # the page first: it is up in seconds and waits for the API


def app_name(prefix: str, part: str) -> str:
    """The Serve application of ``part`` ("ui" or "api") under ``prefix`` ("" or "/name")."""
    label = prefix.strip("/")
    return f"{label}-{part}" if label else part


def api_ws_url(base_url: str, token: str | None = None) -> str:
    """The WebSocket chat API of the graph at ``base_url``, with ``token`` as a query if given."""
    url = base_url.replace("https://", "wss://").replace("http://", "ws://") + "/api/chat"
    return f"{url}?{urlencode({'token': token})}" if token else url


def deploy_graph(
    config: AppConfig,
    prefix: str = "",
    parts: Collection[str] = PARTS,
    timeout: float = 900,
    read_ahead: bool = True,
) -> str:
    """Deploy ``parts`` of the graph of ``config`` under ``prefix`` on the running Serve and
    return its base URL once the API (when deployed) says every deployment is healthy, and
    (``read_ahead``) its translator has read every prompt ahead.

    A page under a prefix talks to the API under the same prefix, unless ``ui.api_url`` is set.
    """
    from ray import serve

    from serving.app import build_apps

    base_url = f"http://127.0.0.1:{config.http.port}{prefix}"
    if prefix and config.ui.api_url is None:
        page = config.ui.model_copy(update={"api_url": api_ws_url(base_url)})
        config = config.model_copy(update={"ui": page})
    for app in build_apps(config):
        if app.name in parts:
            route = (prefix + app.route_prefix).rstrip("/") or "/"
            serve.run(app.app, name=app_name(prefix, app.name), route_prefix=route)
    if "api" in parts:
        wait_healthy(base_url, timeout)
        if read_ahead:
            wait_read_ahead(app_name(prefix, "api"), timeout)
    return base_url


def delete_graph(prefix: str = "", parts: Collection[str] = PARTS) -> None:
    """Remove what ``deploy_graph`` deployed under ``prefix``."""
    from ray import serve

    for part in parts:
        serve.delete(app_name(prefix, part))
