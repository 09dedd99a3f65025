"""How many CPU threads an engine runs with ``threads: auto``, counted where the replica runs.

A node of a cluster can be another kind of machine than the one that read the config, so the
count is taken in the engine's own process, not when the config loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SYSFS_CPUS = Path("/sys/devices/system/cpu")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (a container's or a taskset's share, not the host's)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no CPU affinity
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int] | None = None, sysfs: Path = SYSFS_CPUS) -> int:
    """The physical cores among ``cpus`` (default: ``usable_cpus()``): the two hyper-threads of
    one core count once, as in llama.cpp's and Ollama's default thread count, since the two
    share one core's arithmetic (docs/engines.md, "Threads").

    Where the topology cannot be read (macOS, a sandbox without ``/sys``), each CPU counts."""
    cpus = usable_cpus() if cpus is None else list(cpus)
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))
