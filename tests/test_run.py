"""``run.py`` as a person starts it: a real process, its own Ray, the page, the API, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from serving.testing.probes import free_port, wait_healthy
from serving.testing.tiny_models import tiny_config
from tests.support import post_chat

ROOT = Path(__file__).resolve().parents[1]


def test_run_py_serves_page_api_and_metrics_and_a_failed_share_link_is_one_clear_warning(
    tiny_causal: Path, tiny_seq2seq: Path, tmp_path: Path
):
    """--share turns credentials on; offline, the link itself fails with one warning."""
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "tiny.yaml"
    settings = tiny_config(tiny_causal, tiny_seq2seq).model_dump(mode="json", exclude={"http"})
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["POLYGLOT_CACHE"] = str(tmp_path / "cache")  # its own token file
    command = [sys.executable, "run.py", "--config", str(config), "--port", str(port)]
    command += ["--metrics-port", str(metrics_port), "--share"]
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out_file, stderr=err_file)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, timeout=180)
        # --share asks for credentials even on loopback: the link would be public.
        deadline = time.monotonic() + 60
        while "Access token" not in out_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        (line,) = [x for x in out_path.read_text().splitlines() if x.startswith("Access token")]
        token = line.rsplit(" ", 1)[-1]
        assert post_chat(base, "Hi").status_code == 401
        answer = post_chat(base, "Hello", token)
        assert answer.status_code == 200 and answer.json()["reply"]
        assert httpx.get(f"{base}/", timeout=10).status_code == 200  # the page's login
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).status_code == 200
        # No internet here: the share link fails with one clear line, and the app keeps serving.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if "Public link" in out_path.read_text() or "share link" in err_path.read_text():
                break
            time.sleep(1)
        assert httpx.get(f"{base}/api/healthz", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    out, err = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, err[-3000:]
    assert "Ready in" in out and f"http://127.0.0.1:{port}/" in out
    # A quiet console: the steps, the URL and the token; Ray's and Serve's logs stay in files.
    lines = out.splitlines()
    ready = next(number for number, line in enumerate(lines) if line.startswith("Ready in"))
    assert ready < 25, out
    assert all(len(line) <= 200 for line in lines + err.splitlines()), out + err
    assert "Got updated endpoints" not in out + err
    if "Public link: https://" not in out:  # offline, as in CI
        warnings = [line for line in err.splitlines() if "share link" in line]
        assert len(warnings) == 1 and "internet access" in warnings[0], err[-3000:]


def test_a_model_that_cannot_load_ends_run_py_with_one_clear_error(
    tiny_causal: Path, tiny_seq2seq: Path, tmp_path: Path
):
    """The file passes the checks before Ray starts (it exists) and fails in the replica: the
    console says which deployment and why, and where the whole report is."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(60))
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "broken.yaml"
    extra = {"chat": {"model": {"source": str(broken)}}}
    settings = tiny_config(tiny_causal, tiny_seq2seq, extra=extra)
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"http"})))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["POLYGLOT_CACHE"] = str(tmp_path / "cache")
    command = [sys.executable, "run.py", "--config", str(config), "--port", str(port)]
    command += ["--metrics-port", str(metrics_port)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Ready in" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stdout + result.stderr
    error = errors[0]
    assert "llama.cpp cannot load" in error and "broken.gguf" in error, result.stderr
    assert "logs" in result.stderr
    assert all(len(line) <= 400 + 60 for line in result.stderr.splitlines()), result.stderr


def test_ctrl_c_while_the_models_load_stops_run_py_and_its_ray_without_a_traceback(
    tiny_causal: Path, tiny_seq2seq: Path, tmp_path: Path
):
    import psutil

    config = tmp_path / "tiny.yaml"
    settings = tiny_config(tiny_causal, tiny_seq2seq).model_dump(mode="json", exclude={"http"})
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["POLYGLOT_CACHE"] = str(tmp_path / "cache")
    command = [sys.executable, "run.py", "--config", str(config), "--port", str(free_port())]
    command += ["--metrics-port", str(free_port())]
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out_file, stderr=err_file)
    try:
        deadline = time.monotonic() + 180
        while "ui ready" not in out_path.read_text():  # the page is up, the models are loading
            assert process.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.2)
        assert "Ready in" not in out_path.read_text()
        ray = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        process.kill()
    out, err = out_path.read_text(), err_path.read_text()
    assert process.returncode == 130, out + err
    assert "Interrupted" in out and "Traceback" not in out + err, out + err
    gone, alive = psutil.wait_procs(ray, timeout=30)
    assert not alive, [p.pid for p in alive]
