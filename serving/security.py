"""Who may use the API: the WebSocket's Origin check (cross-site WebSocket hijacking).

A browser sends ``Origin`` with every WebSocket handshake and lets any site open a socket to
any address it can reach, the user's loopback included. So a browser socket is accepted only
from the service's own origin or one listed in ``router.allowed_origins``. Programs (the page's
own server-side client, scripts) send no Origin and are not a cross-site threat.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    if origin is None:
        return True
    if "*" in allowed:
        return True
    if host and urlsplit(origin).netloc.lower() == host.lower():
        return True  # the page served by this very service
    return origin.rstrip("/").lower() in {entry.rstrip("/").lower() for entry in allowed}
