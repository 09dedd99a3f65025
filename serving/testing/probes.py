"""Probes of a running app, for the tests and the benchmark: a free port, health, memory."""

from __future__ import annotations

import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

# Ray's workers take ports 10002-19999 (its default); the kernel gives outgoing connections
# ports from its ephemeral range (Linux: 32768-60999, /proc/sys/net/ipv4/ip_local_port_range).
FIRST_PORT = 20000


def free_port() -> int:
    """A TCP port nobody listens on now (for Serve, metrics, test servers), between Ray's
    workers' ports and the kernel's ephemeral range. A port from that range, as binding port 0
    gives, may be taken by any outgoing connection before its server binds it: Ray's start-up,
    seconds long, makes hundreds of them (a benchmark run's proxy once failed to bind so)."""
    end = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(FIRST_PORT, end) if end > FIRST_PORT + 100 else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"No free port between {FIRST_PORT} and {end}")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: macOS's range starts at 49152
        return 32768


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


def wait_read_ahead(app_name: str, timeout: float = 900) -> None:
    """Poll the translator of the application ``app_name`` until it has read every few-shot
    prompt ahead: it reads the first language's before it is healthy, and the others' after,
    in the background, whose steps would count in a measure taken meanwhile."""
    from ray import serve

    handle = serve.get_deployment_handle("Translator", app_name=app_name)
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(1) as pool:  # .result() may not run on an event loop's thread
        while time.monotonic() < deadline:
            if not pool.submit(lambda: handle.activity.remote().result()).result()["reading"]:
                return
            time.sleep(0.25)
    raise TimeoutError(f"{app_name}'s translator was still reading prompts after {timeout} s")


def app_memory_mib(root: int | None = None) -> dict[str, float]:
    """Proportional set size of the whole app: every process under this one (the local Ray
    cluster this process started), or process ``root`` and every process under it."""
    import psutil

    top = psutil.Process(root)
    processes = top.children(recursive=True) + ([top] if root is not None else [])
    total, counted = 0.0, 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += getattr(info, "pss", info.rss) / 2**20
        counted += 1
    return {"total_mib": round(total), "processes": counted}
