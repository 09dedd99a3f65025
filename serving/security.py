"""Who may use the service: the access token, and the WebSocket's Origin check.

The token: when the service is reachable beyond this machine (or ``security.auth: on``), the
API wants ``Authorization: Bearer <token>`` (a WebSocket may also pass ``?token=``; an OpenAI
client sends its ``api_key`` that way) and the page asks for it as a password.

The Origin check (cross-site WebSocket hijacking): a browser sends ``Origin`` with every
WebSocket handshake and lets any site open a socket to any address it can reach, the user's
loopback included. So a browser socket is accepted only from the service's own origin or one
listed in ``router.allowed_origins``. Programs (the page's own server-side client, scripts)
send no Origin and are not a cross-site threat.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from serving.cache import secret_file
from serving.config import AppConfig

TOKEN_FILE = "api.token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}  # hosts that only this machine can reach


def auth_required(config: AppConfig) -> bool:
    """``security.auth``: 'auto' wants credentials when ``http.host`` is not loopback."""
    if config.security.auth == "auto":
        return config.http.host not in LOOPBACK
    return config.security.auth == "on"


def access_token(config: AppConfig) -> str | None:
    """The token clients must present, or None when the service needs no credentials."""
    if not auth_required(config):
        return None
    return config.security.api_token or secret_file(TOKEN_FILE)


def token_matches(presented: str | None, token: str | None) -> bool:
    """True when no token is needed, or the presented one is right (constant-time)."""
    if token is None:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    if origin is None:
        return True
    if "*" in allowed:
        return True
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True  # the page served by this very service
    return origin.rstrip("/").lower() in {entry.rstrip("/").lower() for entry in allowed}
