"""Prompts read ahead, kept on disk: a replica's next start restores them instead of reading.

A llama.cpp slot's KV cache can be written to a file and read back into any slot of a context
built the same way. The translator reads twelve few-shot prompts ahead (0.75-1.9 s each on
2 cores); restored from their files they take milliseconds, so a later start restores them all
before its first request. So does every replica that autoscaling adds on a machine that has
run one before.

A file is named for everything its KV depends on: the model file (path, size, time), the
llama.cpp build, the cache's settings and the prompt's tokens. A file that llama.cpp still
refuses is removed and the prompt read again. The folder keeps the files used most recently,
up to ``LIMIT_BYTES``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from serving.cache import cache_root

logger = logging.getLogger("ray.serve")

LIMIT_BYTES = 256 * 1024 * 1024  # the translator's twelve prompts take 28 MB, the chat's 0.3
STALE_DRAFT_NS = 3600 * 10**9


class PromptFiles:
    """The files of one model's prompts, in ``folder`` (llama.cpp's ``slot_save_path``)."""

    def __init__(self, folder: Path, model: str) -> None:
        self.folder = folder
        self._model = model

    @classmethod
    def in_cache(cls, model_file: Path, build: str, settings: dict) -> PromptFiles | None:
        """The cache folder's ``llama-prompts``, or None where it cannot be written."""
        folder, model_file = cache_root() / "llama-prompts", model_file.resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            found = model_file.stat()
        except OSError as error:
            logger.warning("Prompts read ahead will not be kept on disk: %s", error)
            return None
        model = [str(model_file), found.st_size, found.st_mtime_ns, build, settings]
        return cls(folder, json.dumps(model, sort_keys=True))

    def name(self, prompt: list[int]) -> str:
        """The file of ``prompt``'s KV, whether or not it exists yet."""
        key = hashlib.sha256(f"{self._model}\n{prompt}".encode()).hexdigest()[:32]
        return f"prompt-{key}.bin"

    def find(self, prompt: list[int]) -> str | None:
        """``prompt``'s file if one was kept, marked as just used."""
        path = self.folder / self.name(prompt)
        try:
            os.utime(path)
        except OSError:  # none yet, or another replica is replacing it
            return None
        return path.name

    def draft(self, prompt: list[int]) -> str:
        """A file name of this process's own, for llama.cpp to write before ``keep``."""
        return f"{self.name(prompt)[:-4]}-{os.getpid()}.part"

    def keep(self, draft: str, prompt: list[int]) -> str:
        """Puts the written ``draft`` in place at once (replicas that start together may write
        the same prompt), then trims the folder to ``LIMIT_BYTES``."""
        name = self.name(prompt)
        os.replace(self.folder / draft, self.folder / name)
        self._trim()
        return name

    def forget(self, name: str) -> None:
        """Removes ``name``: a file that llama.cpp refused (written again after the next read),
        a draft it could not finish, or a copy that is not to be kept."""
        (self.folder / name).unlink(missing_ok=True)

    def _trim(self) -> None:
        files = []
        now = time.time_ns()
        for path in self.folder.glob("prompt-*"):
            try:
                found = path.stat()
            except OSError:  # removed meanwhile by another replica
                continue
            if path.suffix == ".part":  # a draft: being written, or left by a replica that died
                if now - found.st_mtime_ns > STALE_DRAFT_NS:
                    path.unlink(missing_ok=True)
                continue
            files.append((found.st_mtime_ns, found.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):  # the least recently used first
            if total <= LIMIT_BYTES:
                break
            path.unlink(missing_ok=True)
            total -= size
