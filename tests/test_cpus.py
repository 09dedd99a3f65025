import os
from pathlib import Path

import pytest

from serving import cpus
from serving.config import load_config
from serving.engine import Sampling, load_engine
from serving.errors import ConfigError
from serving.model_config import BatchSettings, ModelSpec


def _sysfs(tmp_path: Path, cores: dict[int, tuple[int, int]]) -> Path:
    """A /sys/devices/system/cpu with each CPU's (package, core)."""
    for cpu, (package, core) in cores.items():
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return tmp_path


def test_two_hyper_threads_of_one_core_count_once(tmp_path: Path):
    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1)})
    assert cpus.physical_cores([0, 1], sysfs) == 1
    assert cpus.physical_cores([0, 1, 2, 3], sysfs) == 2
    assert cpus.physical_cores([0, 2], sysfs) == 2  # one thread of each core


def test_cores_of_their_own_and_of_two_packages_each_count(tmp_path: Path):
    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)})
    assert cpus.physical_cores([0, 1, 2, 3], sysfs) == 4  # core 0 of package 1 is another core


def test_without_a_topology_to_read_every_cpu_counts(tmp_path: Path):
    assert cpus.physical_cores([0, 1, 2], tmp_path) == 3
    assert cpus.physical_cores([], tmp_path) == 1


def test_the_count_is_of_the_cpus_this_process_may_use():
    assert cpus.usable_cpus() == sorted(os.sched_getaffinity(0))
    assert 1 <= cpus.physical_cores() <= len(cpus.usable_cpus())


def test_auto_threads_are_counted_when_the_engine_asks(monkeypatch: pytest.MonkeyPatch):
    spec = ModelSpec(source="x", threads="auto", batch_threads="auto")
    monkeypatch.setattr("serving.model_config.physical_cores", lambda: 3)
    monkeypatch.setattr("serving.model_config.usable_cpus", lambda: [0, 1, 2, 3, 4, 5])
    assert (spec.decode_threads(), spec.step_threads()) == (3, 6)
    fixed = ModelSpec(source="x", threads=1, batch_threads=2)
    assert (fixed.decode_threads(), fixed.step_threads()) == (1, 2)
    assert ModelSpec(source="x").decode_threads() is None  # the engine's own default


def test_a_thread_count_is_a_positive_number_or_auto(tmp_path: Path):
    for value in ("0", "many"):
        path = tmp_path / "threads.yaml"
        path.write_text(f"chat: {{model: {{threads: {value}}}}}\n")
        with pytest.raises(ConfigError, match="chat.model.threads"):
            load_config(path=path)


def test_transformers_runs_torch_on_the_auto_count(
    tiny_causal: Path, monkeypatch: pytest.MonkeyPatch
):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr("serving.model_config.physical_cores", lambda: 1)
    try:
        spec = ModelSpec(source=str(tiny_causal), engine="transformers", threads="auto")
        load_engine(spec, BatchSettings(max_batch_size=1), Sampling(max_new_tokens=4))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
