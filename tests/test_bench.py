"""The benchmark script runs end to end on tiny models (CI exercises it; speed is not judged)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_machine_is_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch):
    """A container or a taskset gives the benchmark a share of the host: that share is what
    its seconds depend on, not the host's count."""
    import bench.run

    monkeypatch.setattr(bench.run, "usable_cpus", lambda: [0])
    found = bench.run.machine()
    assert found["cpus"] == found["physical_cores"] == 1 and found["cpu"]


def test_bench_runs_on_tiny_models_and_writes_its_results(tmp_path: Path):
    out, plot = tmp_path / "results.json", tmp_path / "plot.png"
    command = [sys.executable, "-m", "bench.run", "--tiny", "--requests", "2", "--tokens", "24"]
    command += ["--concurrency", "1,4", "--turns", "1", "--french", "1", "--sentences", "2"]
    command += ["--batching-off", "--out", str(out), "--plot", str(plot)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert list(results["engines"]) == ["llama.cpp", "transformers"]
    for engine, found in results["engines"].items():
        assert set(found["layers"]) == {"direct", "handle", "websocket", "gradio"}, engine
        for row in found["layers"].values():
            assert row["requests"] == 2 and row["ttft_p50_ms"] > 0 and row["tokens_per_s"] > 0
        sweeps = ("concurrency", "concurrency_no_batching", "concurrency_direct")
        for sweep in (found[name] for name in sweeps):
            assert [row["concurrency"] for row in sweep.values()] == [1, 4]
            # Every conversation's one turn (--turns 1) was answered and timed.
            assert all(row["errors"] == 0 for row in sweep.values())
            assert all(row["requests"] == row["concurrency"] for row in sweep.values())
        # The table's gains are ratios of what this run measured, against the right baseline.
        on, off = found["concurrency"]["4"], found["concurrency_no_batching"]["4"]
        gain = on["aggregate_tokens_per_s"] / off["aggregate_tokens_per_s"]
        assert on["batching_gain"] == pytest.approx(gain), engine
        assert found["concurrency"]["1"]["gain_over_one"] == 1, engine
        # Like for like: streaming and translate-after-reply got the same English reply.
        french = found["french"]["prompts"]
        assert all(row["same_english_reply"] for row in french), f"{engine}: {french}"
        assert found["translation"]["en-fr"]["sentences"] == 2
        in_turn = found["translation"]["in turn"]  # each language both ways, twice over
        assert in_turn["sentences"] == 4 * in_turn["languages"] > 0, in_turn
        assert 0 < in_turn["p50_s"] <= in_turn["max_s"], in_turn
        assert found["startup"]["cached_deploy_to_healthy_s"] > 0
        # run.py as a person starts it, twice: the page comes up first, then the API, with the
        # whole tree's memory (run.py, Ray and the replicas) taken then, and again once the
        # translator has read every prompt ahead.
        starts = results["launch"][engine]
        assert [launch["cache"] for launch in starts] == ["as found", "as the first start left it"]
        for launch in starts:
            assert 0 < launch["page_up_s"] <= launch["api_ready_s"], launch
            memory = launch["memory"]
            assert memory["processes"] > 5 and memory["total_mib"] > 300, launch
            at_ready = launch["french_at_ready"]
            assert 0 < at_ready["first_text_s"] <= at_ready["done_s"], launch
            # Then the translator's other languages, read in the background, and the memory.
            assert launch["read_ahead_done_s"] > launch["api_ready_s"], launch
            assert launch["memory_read_ahead"]["total_mib"] > 300, launch
        assert found["memory"]["peak_mib"] > 100 and found["memory"]["total_mib"] > 100
    # llama.cpp over transformers, as measured above.
    fast, slow = (results["engines"][name]["layers"]["websocket"] for name in results["engines"])
    decode = fast["decode_tokens_per_s"] / slow["decode_tokens_per_s"]
    assert results["comparison"]["websocket_decode_tokens_per_s"] == pytest.approx(decode)
    assert "peak_memory" in results["comparison"]
    assert plot.stat().st_size > 10_000
    table = out.with_suffix(".md").read_text()
    machine = results["machine"]  # so that runs on other machines are not compared by seconds
    assert 1 <= machine["physical_cores"] <= machine["cpus"] and machine["cpu"], machine
    assert f"{machine['cpus']} CPUs ({machine['physical_cores']} physical cores, " in table
    assert "| llama.cpp | 3. WebSocket API |" in table
    assert "| transformers | 3. WebSocket API |" in table
    assert "| llama.cpp | " in table.split("`run.py` launched")[1]
    assert "| transformers | 4 | in-process `ChatModel.stream` (no Serve) |" in table
