"""The benchmark's markdown tables and plot, from its results: one row per engine and case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LAYERS = {
    "direct": "1. direct `ChatModel.stream`, same engine, in-process (the limit)",
    "handle": "2. Serve DeploymentHandle",
    "websocket": "3. WebSocket API",
    "gradio": "4. Gradio page API (gradio_client)",
}


NAN = float("nan")


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the header, its rule, then one line per row of cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _layers(results: dict[str, Any]) -> list[str]:
    columns = ["engine", "layer", "TTFT p50", "TTFT p95", "over direct (p50)"]
    columns += ["gap between pieces p50", "decode tokens/s", "total p50", "total p95"]
    rows = []
    for engine, found in results["engines"].items():
        for name, label in LAYERS.items():
            row = found["layers"][name]
            rows.append(
                [
                    engine,
                    label,
                    f"{row['ttft_p50_ms']:.0f} ms",
                    f"{row['ttft_p95_ms']:.0f} ms",
                    f"{row['ttft_over_direct_ms']:+.0f} ms (×{row['ttft_ratio']:.2f})",
                    f"{row['itl_p50_ms']:.1f} ms (×{row['itl_ratio']:.2f})",
                    f"{row['decode_tokens_per_s']:.1f}",
                    f"{row['total_p50_s']:.2f} s",
                    f"{row['total_p95_s']:.2f} s",
                ]
            )
    return _table(columns, rows)


def _concurrency(results: dict[str, Any]) -> list[str]:
    columns = ["engine", "concurrent conversations", "path", "aggregate tokens/s", "× one"]
    columns += ["TTFT p50", "TTFT p95", "TTFT p95 / one's p50", "total p50", "total p95"]
    rows = []
    for engine, found in results["engines"].items():
        sweeps = [("WebSocket API", found["concurrency"])]
        if "concurrency_no_batching" in found:
            sweeps.append(("WebSocket API, batching off", found["concurrency_no_batching"]))
        if "concurrency_direct" in found:
            sweeps.append(("in-process `ChatModel.stream` (no Serve)", found["concurrency_direct"]))
        for mode, sweep in sweeps:
            single = next(iter(sweep.values())).get("ttft_p50_ms", NAN)
            for level, row in sweep.items():
                p95 = row.get("ttft_p95_ms", NAN)
                rows.append(
                    [engine, level, mode, f"{row['aggregate_tokens_per_s']:.1f}"]
                    + [f"×{row['gain_over_one']:.2f}", f"{row.get('ttft_p50_ms', NAN):.0f} ms"]
                    + [f"{p95:.0f} ms", f"×{p95 / single:.1f}"]
                    + [f"{row.get(key, NAN):.1f} s" for key in ("total_p50_s", "total_p95_s")]
                    + [str(row["errors"])]
                )
    return _table([*columns, "errors"], rows)


def _french(results: dict[str, Any]) -> list[str]:
    columns = ["engine", "French prompt", "English sentences", "first French text, streaming"]
    columns += ["first text, translate-after-reply", "× sooner", "streaming done"]
    rows = [
        [engine, row["prompt"], str(row["sentences"])]
        + [f"{row['streaming_first_text_s']:.1f} s"]
        + [f"{row['translate_after_reply_first_text_s']:.1f} s", f"×{row['speedup']:.1f}"]
        + [f"{row['streaming_done_s']:.1f} s"]
        for engine, found in results["engines"].items()
        for row in found["french"]["prompts"]
    ]
    return _table(columns, rows)


def _engines(results: dict[str, Any]) -> list[str]:
    columns = ["engine", "fr→en per sentence p50", "en→fr per sentence p50"]
    columns += ["every language both ways in turn: p50, slowest"]
    columns += ["first deploy to healthy", "deploy, cache warm"]
    columns += ["memory after the sweep (PSS)", "peak memory in the sweep"]
    rows = []
    for engine, found in results["engines"].items():
        startup, memory, tr = found["startup"], found["memory"], found["translation"]
        rows.append(
            [engine]
            + [f"{tr[direction]['p50_s']:.2f} s" for direction in ("fr-en", "en-fr")]
            + [_in_turn(tr.get("in turn"))]
            + [f"{startup['first_deploy_to_healthy_s']:.1f} s ({startup['first_deploy_cache']})"]
            + [f"{startup['cached_deploy_to_healthy_s']:.1f} s"]
            + [f"{memory['total_mib']} MiB ({memory['processes']} processes)"]
            + [f"{memory['peak_mib']} MiB"]
        )
    return _table(columns, rows)


def _in_turn(row: dict[str, Any] | None) -> str:
    if not row:
        return "no language served"
    return f"{row['p50_s']:.2f} s, {row['max_s']:.2f} s ({row['languages']} languages)"


def _launch(results: dict[str, Any]) -> list[str]:
    columns = ["engine", "`run.py` launched: page up", "every deployment healthy"]
    columns += ["cache folder", "memory then (PSS, run.py and everything under it)"]
    columns += ['French turn sent at "Ready": first text', "done"]
    columns += ["every prompt read ahead (after healthy, in the background)", "memory then"]
    rows = [
        [engine, f"{found['page_up_s']:.1f} s", f"{found['api_ready_s']:.1f} s", found["cache"]]
        + [_memory(found["memory"])]
        + [f"{found['french_at_ready'][key]:.2f} s" for key in ("first_text_s", "done_s")]
        + _read_ahead(found)
        for engine, starts in results.get("launch", {}).items()
        for found in starts
    ]
    return _table(columns, rows)


def _memory(memory: dict[str, Any]) -> str:
    return f"{memory['total_mib']} MiB ({memory['processes']} processes)"


def _read_ahead(found: dict[str, Any]) -> list[str]:
    if "read_ahead_done_s" not in found:  # a run from before the read-ahead in the background
        return ["before healthy", "as above"]
    return [f"{found['read_ahead_done_s']:.1f} s", _memory(found["memory_read_ahead"])]


def _machine(machine: dict[str, Any]) -> str:
    """Such as '2 CPUs (2 physical cores, AMD EPYC)'; '2 CPUs' for runs that lack the rest."""
    known = [f"{machine['physical_cores']} physical cores"] if "physical_cores" in machine else []
    known += [machine["cpu"]] if machine.get("cpu") else []
    return f"{machine['cpus']} CPUs" + (f" ({', '.join(known)})" if known else "")


def write_markdown(results: dict[str, Any], path: Path) -> str:
    first = next(iter(results["engines"].values()))
    lines = [
        f"Mode: {results['mode']} ({first['chat_model']}), {_machine(results['machine'])}, "
        f"{results['settings']['tokens']} tokens per reply, greedy. Ray started in "
        f"{results['ray_start_s']:.1f} s.",
        "",
        *_layers(results),
        "",
        *_concurrency(results),
        "",
        *_french(results),
        "",
        *_engines(results),
        "",
        *_launch(results),
    ]
    if results.get("comparison"):
        ratios = [[name, f"×{value:.2f}"] for name, value in results["comparison"].items()]
        lines += ["", *_table(["llama.cpp over transformers, this run", "ratio"], ratios)]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    for engine, found in results["engines"].items():
        rows = list(found["concurrency"].values())
        levels = [row["concurrency"] for row in rows]
        for key, label, style in [
            ("ttft_p95_ms", "first token p95", ":"),
            ("total_p50_s", "reply p50", "-"),
        ]:
            scale = 1000 if key.endswith("_ms") else 1
            values = [row.get(key, float("nan")) / scale for row in rows]
            latency.plot(levels, values, "o" + style, label=f"{label}, {engine}")
        throughput.plot(levels, [row["aggregate_tokens_per_s"] for row in rows], "o-", label=engine)
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
