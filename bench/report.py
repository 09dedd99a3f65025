"""The benchmark's markdown table and plot, from its results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LAYERS = {
    "direct": "1. direct `generate` + streamer (the limit)",
    "handle": "2. Serve DeploymentHandle",
    "websocket": "3. WebSocket API",
    "gradio": "4. Gradio page API (gradio_client)",
}


def write_markdown(results: dict[str, Any], path: Path) -> str:
    lines = [
        f"Mode: {results['mode']} ({results['chat_model']}), {results['machine']['cpus']} CPUs, "
        f"{results['settings']['tokens']} tokens per reply, greedy.",
        "",
        "| layer | TTFT p50 | TTFT p95 | over direct (p50) | inter-token p50 | total p50 | total "
        "p95 | tokens/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in LAYERS.items():
        row = results["layers"][name]
        lines.append(
            f"| {label} | {row['ttft_p50_ms']:.0f} ms | {row['ttft_p95_ms']:.0f} ms | "
            f"+{row['ttft_over_direct_ms']:.0f} ms (×{row['ttft_ratio']:.2f}) | "
            f"{row['itl_p50_ms']:.1f} ms (×{row['itl_ratio']:.2f}) | {row['total_p50_s']:.2f} s | "
            f"{row['total_p95_s']:.2f} s | {row['tokens_per_s']:.1f} |"
        )
    lines += [
        "",
        "| concurrent conversations | batching | aggregate tokens/s | × one | × batching off | "
        "TTFT p50 | TTFT p95 | total p50 | total p95 | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    sweeps = [("on", results["concurrency"]), ("off", results["concurrency_no_batching"])]
    for level in results["concurrency"]:
        for mode, sweep in sweeps:
            row = sweep[level]
            gain = f"×{row['batching_gain']:.2f}" if "batching_gain" in row else ""
            lines.append(
                f"| {level} | {mode} | {row['aggregate_tokens_per_s']:.1f} | "
                f"×{row['gain_over_one']:.2f} | {gain} | "
                f"{row.get('ttft_p50_ms', float('nan')):.0f} ms | "
                f"{row.get('ttft_p95_ms', float('nan')):.0f} ms | "
                f"{row.get('total_p50_s', float('nan')):.1f} s | "
                f"{row.get('total_p95_s', float('nan')):.1f} s | {row['errors']} |"
            )
    lines += [
        "",
        "| French prompt | English sentences | first French text, streaming | first text, "
        "translate-after-reply | × sooner | streaming done |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["french"]["prompts"]:
        lines.append(
            f"| {row['prompt']} | {row['sentences']} | {row['streaming_first_text_s']:.1f} s | "
            f"{row['translate_after_reply_first_text_s']:.1f} s | ×{row['speedup']:.1f} | "
            f"{row['streaming_done_s']:.1f} s |"
        )
    startup, memory = results["startup"], results["memory"]
    lines += [
        "",
        f"Start-up: Ray {startup['ray_start_s']:.1f} s; first deploy to healthy "
        f"{startup['first_deploy_to_healthy_s']:.1f} s (cache {startup['first_deploy_cache']}); "
        f"deploy with cached weights {startup['cached_deploy_to_healthy_s']:.1f} s. "
        f"Memory of the whole app (PSS, {memory['processes']} processes): "
        f"{memory['total_mib']} MiB.",
    ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    sweeps = [
        ("batching", results["concurrency"]),
        ("no batching", results["concurrency_no_batching"]),
    ]
    for mode, sweep in sweeps:
        rows = list(sweep.values())
        levels = [row["concurrency"] for row in rows]
        style = "-" if mode == "batching" else ":"
        for key, label in [("ttft_p50_ms", "first token p50"), ("total_p50_s", "reply p50")]:
            scale = 1000 if key.endswith("_ms") else 1
            values = [row.get(key, float("nan")) / scale for row in rows]
            latency.plot(levels, values, "o" + style, label=f"{label}, {mode}")
        throughput.plot(
            levels, [row["aggregate_tokens_per_s"] for row in rows], "o" + style, label=mode
        )
    latency.set(xlabel="concurrent conversations", ylabel="seconds", title="Latency (WebSocket)")
    latency.set_xscale("log", base=2)
    latency.legend(fontsize=8)
    throughput.legend()
    throughput.set(
        xlabel="concurrent conversations", ylabel="tokens/s", title="Aggregate throughput"
    )
    throughput.set_xscale("log", base=2)
    figure.suptitle(f"{results['mode']} models, {results['machine']['cpus']} CPUs")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
