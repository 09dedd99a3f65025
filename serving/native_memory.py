"""What a replica's native libraries freed goes back to the system (glibc; a no-op elsewhere).

glibc gives each thread that allocates its own arena, up to 8 per core, and keeps what a thread
freed in that arena. lingua builds its models on a pool of threads, so the detector replica kept
70 to 110 MB that it no longer used, scattered over those threads' arenas.
"""

from __future__ import annotations

import ctypes
import functools

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, musl: their allocators return memory their own way
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(count: int) -> None:
    """Threads started after this call share ``count`` arenas instead of holding one each."""
    if (libc := _glibc()) is not None:
        libc.mallopt(M_ARENA_MAX, count)


def release_free_memory() -> None:
    """Hand the free pages of every arena back to the system."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)
