"""Where the app keeps files it makes: converted weights, the browser-storage key, the token."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def cache_root() -> Path:
    """$POLYGLOT_CACHE, else $XDG_CACHE_HOME/polyglot-chat, else ~/.cache/polyglot-chat."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyglot-chat"
    return Path(os.environ.get("POLYGLOT_CACHE", default))


def secret_file(name: str) -> str:
    """A random secret made once and kept in the cache folder (mode 0600), so restarts keep it."""
    path = cache_root() / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
