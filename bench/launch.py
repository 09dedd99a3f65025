"""A start as a person makes one: `python run.py` launched, timed until the page is up and until
every deployment is healthy, the memory of its whole process tree (run.py included) then, a
French turn sent the moment run.py says "Ready", as a script would send it, and the memory again
once the translator has read its other languages' prompts ahead (in the background).

It runs before the benchmark starts its own Ray cluster, so nothing else shares the machine,
and each launch starts and stops a Ray cluster of its own: Ray's start-up and every import are
in the figure, as they are in `make run`'s.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.measure import Sample, socket_pieces, timed
from bench.scenarios import FRENCH
from serving.config import AppConfig
from serving.testing.graphs import api_ws_url
from serving.testing.probes import app_memory_mib, free_port
from serving.translate import READ_AHEAD_DONE

ROOT = Path(__file__).resolve().parents[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_read_ahead(log: Path, deadline: float) -> None:
    """Until the translator's replica log, in the Ray log folder that run.py printed, says
    that it has read every prompt ahead."""
    folder = re.search(r"its logs: (\S+)", log.read_text())
    if folder is None:
        raise RuntimeError(f"run.py did not say where its logs are:\n{log.read_text()}")
    while time.perf_counter() < deadline:
        for replica in Path(folder.group(1)).glob("serve/replica_*_Translator_*.log"):
            if READ_AHEAD_DONE in replica.read_text(errors="replace"):
                return
        time.sleep(0.5)
    raise RuntimeError("The translator was still reading prompts ahead")


async def _french_turn(base_url: str) -> Sample:
    import websockets

    async with websockets.connect(api_ws_url(base_url), max_size=None) as socket:
        return await timed(socket_pieces(socket, FRENCH[0]))


def launch_to_ready(
    config: AppConfig, workdir: Path, cache: Path | None, timeout: float = 900
) -> dict[str, Any]:
    """Seconds from launching run.py with ``config`` to its page answering and to /api/healthz
    answering 200, the PSS of run.py and every process under it at that moment, and the first
    text and end of a French turn sent once run.py has said "Ready".

    ``cache``: the weights cache run.py gets (an empty folder for a start with nothing cached),
    or None for the user's own.
    """
    port = free_port()
    settings = workdir / "launch.yaml"
    settings.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"http"})))
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    if cache is not None:
        env["POLYGLOT_CACHE"] = str(cache)
    command = [sys.executable, "run.py", "--config", str(settings), "--port", str(port)]
    command += ["--metrics-port", str(free_port())]
    log = workdir / "launch.log"
    found: dict[str, Any] = {"cache": "empty" if cache is not None else "as found"}
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = started + timeout
        while "page_up_s" not in found or "api_ready_s" not in found:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"run.py did not get ready; its output:\n{log.read_text()}")
            if "page_up_s" not in found and _answers(f"{base}/"):
                found["page_up_s"] = time.perf_counter() - started
            if "api_ready_s" not in found and _answers(f"{base}/api/healthz"):
                found["api_ready_s"] = time.perf_counter() - started
                found["memory"] = app_memory_mib(process.pid)
            time.sleep(0.1)
        while "Ready in" not in log.read_text():  # healthy before run.py has said so
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"run.py did not say it was ready:\n{log.read_text()}")
            time.sleep(0.1)
        # The first French turn of this start: whatever a replica still reads or warms after
        # saying it is healthy, this turn waits for it.
        turn = asyncio.run(_french_turn(base))
        found["french_at_ready"] = {"first_text_s": turn.ttft, "done_s": turn.total}
        # The translator reads its other languages' prompts after it is healthy: the memory
        # of the whole app once it has.
        _wait_read_ahead(log, deadline)
        found["read_ahead_done_s"] = time.perf_counter() - started
        found["memory_read_ahead"] = app_memory_mib(process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
    return found
