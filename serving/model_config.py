"""What every model deployment's section of the config holds: its Serve options (replicas,
resources, health checks), its model and engine, how it generates and how it batches.

``serving.config`` puts these sections together into the one ``AppConfig``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.cpus import physical_cores, usable_cpus

logger = logging.getLogger(__name__)


class StrictModel(BaseModel):
    """Settings that refuse unknown keys: a typo in a config file is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class ActorOptions(StrictModel):
    num_cpus: float = Field(0.5, ge=0, description="CPUs Ray reserves for each replica.")
    num_gpus: float = Field(
        0, ge=0, description="GPUs per replica; fractions share a GPU. Falls back to 0 without one."
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources a node must offer."
    )
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for this deployment's replicas (pip, env_vars, ...)."
    )


class DeploymentSettings(StrictModel):
    num_replicas: int = Field(
        1, ge=1, description="Fixed replica count (ignored with autoscaling)."
    )
    autoscaling_config: dict[str, Any] | None = Field(
        None,
        description="Serve autoscaling_config (min/initial/max_replicas, target_ongoing_requests).",
    )
    max_ongoing_requests: int = Field(8, ge=1, description="Requests one replica works on at once.")
    max_queued_requests: int = Field(
        -1, description="Requests waiting per caller before Serve answers 'busy'; -1 is unbounded."
    )
    health_check_period_s: float = Field(10, gt=0, description="Seconds between health checks.")
    health_check_timeout_s: float = Field(30, gt=0, description="Seconds before a check fails.")
    ray_actor_options: ActorOptions = Field(default_factory=ActorOptions)

    def serve_options(self, gpu_available: bool, name: str, warn: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``; GPU requests drop to CPU without a GPU."""
        actor = self.ray_actor_options.model_dump(exclude_none=True)
        if actor["num_gpus"] and not gpu_available:
            if warn:
                logger.warning(
                    "%s asks for %s GPU but none exists: running on CPU.", name, actor["num_gpus"]
                )
            actor["num_gpus"] = 0
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "ray_actor_options": actor,
        }
        if self.autoscaling_config:
            options["autoscaling_config"] = self.autoscaling_config
        else:
            options["num_replicas"] = self.num_replicas
        return options


class GenerationSettings(StrictModel):
    max_new_tokens: int = Field(128, ge=1, description="Upper bound on generated tokens.")
    min_new_tokens: int = Field(0, ge=0, description="Lower bound on generated tokens.")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (with do_sample).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (with do_sample).")
    repetition_penalty: float = Field(1.0, gt=0, description="Penalty on repeated tokens.")


class BatchSettings(StrictModel):
    """Concurrent requests decoded together. llama.cpp: that many slots, and a request joins the
    running batch at the next step (continuous batching). transformers: ``@serve.batch`` gathers
    requests into one ``generate``."""

    max_batch_size: int = Field(
        8, ge=1, description="Most requests decoded together; 1 turns batching off."
    )
    batch_wait_timeout_s: float = Field(
        0.005,
        ge=0,
        description="transformers: how long a batch waits for more requests before it starts.",
    )

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


class ModelSpec(StrictModel):
    source: str = Field(
        description=(
            "Where the weights are: a Hugging Face id, a local folder or .gguf file, or "
            "'package:<module>[/<file>]' for weights shipped in an installed Python package."
        )
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside a local folder.")
    pip_package: str | None = Field(None, description="The pip package that ships these weights.")
    engine: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description=(
            "What runs the model: 'auto' is llama.cpp for a .gguf file on a CPU (natively, with "
            "continuous batching) and transformers for everything else (GPU, Hugging Face models)."
        ),
    )
    context_tokens: int | None = Field(
        None,
        ge=64,
        description=(
            "llama.cpp: tokens of context per conversation (prompt and reply), reserved for each "
            "of batching.max_batch_size slots; default 2048."
        ),
    )
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        "f16",
        description=(
            "llama.cpp: the precision of the KV cache (the context that each slot keeps). "
            "'q8_0' holds it in 8-bit blocks, in about half the memory of 'f16' (llama.cpp's "
            "--cache-type-k/-v), and turns on flash attention, which it needs."
        ),
    )
    prompt_cache_mib: int = Field(
        0,
        ge=0,
        description=(
            "llama.cpp: memory (MiB) for the KV of prompts pushed out of their slot, to be read "
            "back when that conversation returns. 0 (the default) keeps none: llama.cpp's own "
            "default of 8 GiB lets a replica grow with every distinct prompt it has served."
        ),
    )
    saved_prompts: bool = Field(
        True,
        description=(
            "llama.cpp: keep the KV of the prompts read ahead at start-up (the translator's "
            "few-shot prompts, the chat's system prompt) in the cache folder, a few MB each, so "
            "that the next start, or a replica added on this machine, restores them in "
            "milliseconds instead of reading them again (9 s for the translator on 2 cores)."
        ),
    )
    kind: Literal["auto", "causal", "seq2seq"] = Field(
        "auto", description="Architecture family; 'auto' reads it from the model config."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="'auto' is float16 on a GPU and float32 on CPU."
    )
    max_input_tokens: int | None = Field(
        None, ge=8, description="Prompt budget in tokens; default: the model's own context limit."
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None,
        description=(
            "CPU threads for the engine (llama.cpp: for decoding one conversation alone); "
            "'auto': one per physical core this replica may use, counted on its own machine "
            "(hyper-threads of one core count once); default: torch's own choice, or 1 for "
            "llama.cpp."
        ),
    )
    batch_threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None,
        description=(
            "llama.cpp: CPU threads for reading prompts and for the decoding steps of several "
            "conversations at once; 'auto': every CPU this replica may use; default: `threads`."
        ),
    )

    def decode_threads(self) -> int | None:
        """``threads`` as a count, 'auto' counted in this process (``serving.cpus``)."""
        return physical_cores() if self.threads == "auto" else self.threads

    def step_threads(self) -> int | None:
        """``batch_threads`` as a count, 'auto' counted in this process."""
        return len(usable_cpus()) if self.batch_threads == "auto" else self.batch_threads
