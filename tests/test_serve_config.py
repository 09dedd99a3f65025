"""The Serve config files and the KubeRay manifest: in step with the profiles, valid, and real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.app import _config, deployment_settings
from serving.config import available_profiles, load_config
from serving.serve_config import KUBERAY_FILE, ROOT, SERVE_DIR, all_files, main, serve_config
from serving.testing.probes import free_port, wait_healthy
from serving.testing.tiny_models import tiny_config
from tests.support import post_chat


def test_the_committed_files_are_what_the_profiles_generate():
    assert main(["--check"]) == 0, "run `python -m serving.serve_config` and commit the result"
    assert set(all_files()) == set(SERVE_DIR.glob("*.yaml")) | {KUBERAY_FILE}


@pytest.mark.parametrize("profile", available_profiles())
@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_each_serve_config_is_valid_and_lists_every_deployment(profile: str, variant: str):
    data = yaml.safe_load((SERVE_DIR / f"{profile}-{variant}.yaml").read_text())
    schema = ServeDeploySchema.model_validate(data)  # what `serve run`/`serve deploy` accept
    for application in schema.applications:
        config = _config(application.args)  # the builders accept the YAML's args
        expected = deployment_settings(config)[application.name]
        assert [d.name for d in application.deployments] == list(expected)
        for deployment in application.deployments:
            settings = expected[deployment.name]
            assert deployment.max_ongoing_requests == settings.max_ongoing_requests
            assert deployment.health_check_period_s == settings.health_check_period_s
            gpus = deployment.ray_actor_options.num_gpus
            wanted = settings.ray_actor_options.num_gpus if variant == "gpu" else 0
            assert gpus == wanted
    if variant == "gpu" and profile == "offline":  # fractions: both models share one GPU
        chat = data["applications"][1]["deployments"][2]
        assert chat["name"] == "ChatModel" and chat["ray_actor_options"]["num_gpus"] == 0.5


def test_the_kuberay_manifest_runs_the_same_serve_config():
    manifest = yaml.safe_load(KUBERAY_FILE.read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert embedded == serve_config("offline", gpu=False)
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == __import__("ray").__version__
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert worker["image"] == head["image"]
    assert (ROOT / "deploy" / "Dockerfile").exists()


def test_serve_run_serves_page_and_api_and_serve_status_lists_every_deployment_healthy(
    tiny_causal: Path, tiny_seq2seq: Path, tmp_path: Path
):
    """`serve run` on a generated config, as an operator runs it (a real process)."""
    port = free_port()
    overrides = tmp_path / "tiny.yaml"
    settings = tiny_config(tiny_causal, tiny_seq2seq).model_dump(mode="json", exclude={"http"})
    overrides.write_text(yaml.safe_dump(settings))
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(
        yaml.safe_dump(serve_config("offline", False, str(overrides), port), sort_keys=False)
    )
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    # Ray 2.60 starts local clusters with token auth; its CLI must be told to send the token.
    env["RAY_AUTH_MODE"] = "token"
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [bin_dir / "serve", "run", str(config_file)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, timeout=240)
        assert "Polyglot chat" in httpx.get(f"{base}/", timeout=10).text
        reply = post_chat(base, "Bonjour !").json()
        assert reply["language"] == "fr" and reply["reply"]
        status = subprocess.run(
            [bin_dir / "serve", "status"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        applications = yaml.safe_load(status.stdout)["applications"]
        states = {
            f"{app}/{name}": info["status"]
            for app, details in applications.items()
            for name, info in details["deployments"].items()
        }
        every = {
            f"{app}/{name}"
            for app, names in deployment_settings(load_config("offline")).items()
            for name in names
        }
        assert set(states) == every and set(states.values()) == {"HEALTHY"}, json.dumps(states)
    finally:
        process.terminate()
        process.wait(timeout=120)
        log.close()
