"""Probes of a running app, for the tests and the benchmark: a free port, health, memory."""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A TCP port nobody listens on now (for Serve, metrics, test servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(base_url: str, timeout: float = 900) -> None:
    """Poll ``/api/healthz`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/api/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{base_url} was not healthy after {timeout} s")


def app_memory_mib() -> dict[str, float]:
    """Proportional set size of every process of the local Ray cluster (the whole app)."""
    import psutil

    total, counted = 0.0, 0
    for process in psutil.Process().children(recursive=True):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += getattr(info, "pss", info.rss) / 2**20
        counted += 1
    return {"total_mib": round(total), "processes": counted}
