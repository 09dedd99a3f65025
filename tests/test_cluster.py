"""The graph on a two-node cluster: a deployment that asks for a custom resource lands there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_deployment_asking_for_a_custom_resource_lands_on_the_node_that_has_it(
    tiny_causal: Path, tiny_seq2seq: Path
):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.cluster_placement", str(tiny_causal), str(tiny_seq2seq)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    replicas = result["replicas"]
    assert set(replicas) == {
        "LanguageDetector",
        "Translator",
        "ChatModel",
        "Router",
    }
    assert replicas["Translator"] == result["worker"] != result["head"]
    assert result["language"] == "fr" and result["reply"]  # the graph works across the nodes
