"""The benchmark script runs end to end on tiny models (CI exercises it; speed is not judged)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


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
        for sweep in (found["concurrency"], found["concurrency_no_batching"]):
            assert [row["concurrency"] for row in sweep.values()] == [1, 4]
            assert all(row["errors"] == 0 for row in sweep.values())
        french = found["french"]["prompts"][0]
        assert french["streaming_first_text_s"] > 0
        assert french["translate_after_reply_first_text_s"] > 0
        assert found["translation"]["TranslatorEnFr"]["sentences"] == 2
        assert found["startup"]["cached_deploy_to_healthy_s"] > 0
        assert found["memory"]["peak_mib"] > 100 and found["memory"]["total_mib"] > 100
    assert set(results["comparison"]) >= {"websocket_decode_tokens_per_s", "peak_memory"}
    assert plot.stat().st_size > 10_000
    table = out.with_suffix(".md").read_text()
    assert "| llama.cpp | 3. WebSocket API |" in table
    assert "| transformers | 3. WebSocket API |" in table
