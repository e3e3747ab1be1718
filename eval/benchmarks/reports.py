"""Benchmark reports: the issue targets (met / MISSED / n/a) and the plain-text tables of each sub-command."""

from __future__ import annotations

# Issue targets, reported next to what is measured (misses included). They are stated for the full sizes
# (decoder 256 wide, chunk 256, contexts 1024-8192); at `--quick` sizes they are not applicable (the KV ratio's
# 5% tolerance, too, assumes a chunk much longer than the generated tokens).
TARGETS = {
    "train_batched_vs_sequential_min": 1.3,
    "train_batched_vs_llama_min_at_1024": 1.0,
    "prefill_vs_llama_max": {4096: 0.5, 8192: 0.3},
    "decode_vs_llama_min_at_4096": 1.5,
    "kv_bytes_relative_tolerance": 0.05,
}
NOT_APPLICABLE = "n/a"


def check_targets(training: list, inference: list, quick: bool = False) -> list:
    """One entry per issue target: what was asked, what was measured, and `status` met / MISSED / n/a.

    With `quick=True` every target (stated for full-size models) is reported as `n/a` with `met=None`, the
    measured value still shown.
    """
    checks = []

    def add(name, measured, target, met):
        met = None if quick else bool(met)
        status = NOT_APPLICABLE if met is None else ("met" if met else "MISSED")
        checks.append({"target": name, "measured": round(measured, 4), "threshold": target, "met": met,
                       "status": status})

    for row in training:
        speedup = row["speedup_of_batched"]
        if "vs_memory_sequential" in speedup:
            value = speedup["vs_memory_sequential"]
            add(f"train {row['context']}: batched / sequential >= 1.3", value, 1.3, value >= 1.3)
        value = speedup["vs_llama_full_context"]
        threshold = TARGETS["train_batched_vs_llama_min_at_1024"]
        if row is training[0]:
            add(f"train {row['context']}: batched / full Llama >= {threshold}", value, threshold, value >= threshold)
        else:
            add(f"train {row['context']}: batched / full Llama > 1 (ahead)", value, 1.0, value > 1.0)
    for row in inference:
        ratios, context = row["ratios"], row["context"]
        if context in TARGETS["prefill_vs_llama_max"]:
            limit = TARGETS["prefill_vs_llama_max"][context]
            value = ratios["prefill_memory_over_llama"]
            add(f"prefill {context}: memory / Llama <= {limit}", value, limit, value <= limit)
        if context == 4096:
            value = ratios["decode_memory_over_llama"]
            add("decode 4096: memory / Llama tokens/s >= 1.5", value, 1.5, value >= 1.5)
        expected, value = ratios["kv_bytes_expected_ratio"], ratios["kv_bytes_memory_over_llama"]
        tolerance = TARGETS["kv_bytes_relative_tolerance"]
        add(f"KV {context}: memory / Llama within 5% of (slots+chunk)/context={expected:.4f}", value, expected,
            abs(value - expected) <= tolerance * expected)
    return checks


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _load_text(row: dict) -> str:
    values = [v for v in row.get("load_average", []) if v is not None]
    return "-" if not values else "-".join(f"{v:.1f}" for v in values)


TRAINING_COLUMNS = ["memory_batched", "memory_sequential", "llama_full_context", "recurrent_memory"]


def _training_lines(rows: list) -> list:
    header = f"{'context':>8} {'batch':>5} {'chunks':>6} " + " ".join(f"{n:>19}" for n in TRAINING_COLUMNS)
    lines = ["\n(a) training step (fwd + bwd + AdamW), tokens/s", header + "   batched/seq  batched/llama  load"]
    for row in rows:
        rate, speedup = row["tokens_per_s"], row["speedup_of_batched"]
        cells = " ".join(f"{fmt(rate[n]) if n in rate else '-':>19}" for n in TRAINING_COLUMNS)
        seq = speedup.get("vs_memory_sequential")
        lines.append(f"{row['context']:>8} {row['batch_size']:>5} {row['num_chunks']:>6} {cells}   "
                     f"{fmt(seq) if seq else '-':>11}  {fmt(speedup['vs_llama_full_context']):>13}  "
                     f"{_load_text(row)}")
    return lines


def _inference_lines(rows: list) -> list:
    lines = ["\n(b) inference, batch 1 (prefill = time to first token)",
             f"{'context':>8} {'slots':>5} {'prefill mem s':>13} {'prefill llama s':>15} {'ratio':>6} "
             f"{'decode mem tok/s':>16} {'decode llama tok/s':>18} {'ratio':>6} {'KV mem':>10} "
             f"{'KV llama':>11} {'ratio':>7} {'expected':>8}  load"]
    for row in rows:
        mem, full, r = row["memory"], row["llama_full_context"], row["ratios"]
        lines.append(
            f"{row['context']:>8} {row['num_memory_slots']:>5} {mem['prefill_s']:>13.4f} "
            f"{full['prefill_s']:>15.4f} {r['prefill_memory_over_llama']:>6.3f} "
            f"{fmt(mem['decode_tokens_per_s']):>16} {fmt(full['decode_tokens_per_s']):>18} "
            f"{r['decode_memory_over_llama']:>6.2f} {mem['kv_cache_bytes']:>10,} {full['kv_cache_bytes']:>11,} "
            f"{r['kv_bytes_memory_over_llama']:>7.4f} {r['kv_bytes_expected_ratio']:>8.4f}  {_load_text(row)}")
    return lines


def format_memory_table(result: dict) -> str:
    """Plain-text tables of a `memory` result."""
    settings = result["settings"]
    lines = [f"memory benchmark: {settings['device']} {settings['dtype']}, {settings['threads']} threads, "
             f"torch {settings['torch']}"]
    if result["training"]:
        lines += _training_lines(result["training"])
    if result["inference"]:
        lines += _inference_lines(result["inference"])
    lines.append("\ntargets")
    for check in result["targets"]:
        status = check.get("status") or ("met" if check["met"] else "MISSED")
        lines.append(f"  [{status:>6}] {check['target']}: measured {check['measured']}")
    lines.append("load = 1-minute load average before-after each measurement; above the thread count, other "
                 "processes shared the CPU and the numbers are noisy")
    if any(check.get("met") is None for check in result["targets"]):
        lines.append("n/a = a target stated for the full sizes, not applicable at --quick sizes")
    lines += [f"note: {note}" for note in settings["notes"]]
    return "\n".join(lines)


def format_autoencoder(result: dict) -> str:
    unroll, mixer = result["unroll"], result["mixer_vs_llama"]
    return "\n".join([
        f"autoencoder benchmark: {result['settings']['device']} {result['settings']['dtype']}",
        f"unroll [{unroll['batch']} x {unroll['hidden']}] -> {unroll['length']} windows: gather "
        f"{unroll['gather_ms']:.3f} ms, loop {unroll['loop_ms']:.3f} ms, speedup {unroll['speedup']:.1f}x",
        f"training tokens/s at {mixer['batch']} x {mixer['length']}, d={mixer['hidden']}, {mixer['layers']} layers: "
        f"mixer {fmt(mixer['mixer_tokens_per_s'])} ({mixer['mixer_params']:,} params), llama "
        f"{fmt(mixer['llama_tokens_per_s'])} ({mixer['llama_params']:,} params), "
        f"ratio {mixer['mixer_over_llama']:.2f}",
    ])

