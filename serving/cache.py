"""Where the app keeps files it makes: converted weights, the browser-storage key."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$POLYGLOT_CACHE, else $XDG_CACHE_HOME/polyglot-chat, else ~/.cache/polyglot-chat."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyglot-chat"
    return Path(os.environ.get("POLYGLOT_CACHE", default))
