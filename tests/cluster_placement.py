"""Run by tests/test_cluster.py in its own process: a two-node Ray cluster on this machine.

Only the second node offers the custom resource ``translator_node``; the config asks for it on
the en->fr translator. Prints where every replica landed, as JSON, and one French turn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
from ray import serve
from ray.cluster_utils import Cluster

from serving.testing.graphs import deploy_graph
from serving.testing.probes import free_port
from serving.testing.tiny_models import tiny_config
from tests.replicas import ask, replica_names
from tests.support import post_chat

DEPLOYMENTS = (
    "LanguageDetector",
    "Translator",
    "ChatModel",
    "Router",
)


def main(causal: str, seq2seq: str) -> None:
    port = free_port()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    worker = cluster.add_node(num_cpus=2, resources={"translator_node": 1})
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        placed = {"ray_actor_options": {"num_cpus": 0.1, "resources": {"translator_node": 0.5}}}
        config = tiny_config(
            Path(causal),
            Path(seq2seq),
            port,
            extra={"translator": {"deployment": placed}},
        )
        base = deploy_graph(config, parts=["api"], timeout=180)
        turn = post_chat(base, "Bonjour, comment allez-vous ?").json()
        replicas = {
            deployment: ask(name, lambda: ray.get_runtime_context().get_node_id())
            for deployment in DEPLOYMENTS
            for name in replica_names("api", deployment)
        }
        print(
            "RESULT "
            + json.dumps(
                {
                    "head": cluster.head_node.node_id,
                    "worker": worker.node_id,
                    "replicas": replicas,
                    "language": turn.get("language"),
                    "reply": turn.get("reply"),
                }
            )
        )
        serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
