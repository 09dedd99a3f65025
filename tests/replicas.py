"""Serve's replicas as Ray actors, found without the dashboard (which the app keeps off).

Replicas are named actors, ``SERVE_REPLICA::<app>#<deployment>#<id>`` in namespace "serve";
``__ray_call__`` runs a function inside one, to ask what only the replica knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

PREFIX = "SERVE_REPLICA::"


def serve_actor_names(*prefixes: str) -> set[str]:
    """Serve's named actors (namespace "serve") whose names start with one of ``prefixes``:
    replicas, and also ``SERVE_CONTROLLER_ACTOR`` and ``SERVE_PROXY_ACTOR-<node>``."""
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefixes)
    }


def replica_names(app: str, deployment: str) -> set[str]:
    return serve_actor_names(f"{PREFIX}{app}#{deployment}#")


def ask(name: str, question: Callable[[], Any]) -> Any:
    """``question()``, run inside the replica actor called ``name``."""
    actor = ray.get_actor(name, namespace="serve")
    return ray.get(actor.__ray_call__.remote(lambda _replica: question()), timeout=60)
