"""Benchmark reports: the targets (met / MISSED / unresolved / n/a) and the plain-text tables of each sub-command.

A timed figure is a `timing.spread` (median, min-max and the median's confidence interval over the repeats);
`fmt_spread` prints it as `median (min-max)`. A target is met or MISSED only when the median's whole interval
says so, and unresolved when the interval straddles the threshold: on a busy machine a rerun then cannot turn a
met into a MISSED by chance, it stays unresolved until the noise is smaller than the margin (`verdict`).
"""

from __future__ import annotations

# Targets, reported next to what is measured (misses included). They are stated for the full sizes
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


def verdict(figure, tests: list, quick: bool = False) -> tuple[bool | None, str]:
    """`(met, status)` of a figure (a spread, or an exact number) against monotone `tests` that must all pass.

    `met` is the median's verdict (`None` at quick sizes); `status` is "met" when every test passes at both ends
    of the median's interval, "MISSED" when a test fails at both ends, "unresolved" otherwise, "n/a" at quick
    sizes (targets are stated for the full sizes).
    """
    if quick:
        return None, NOT_APPLICABLE
    median, (low, high) = (figure["median"], figure["interval"]) if isinstance(figure, dict) else (figure, (figure,) * 2)
    if all(test(low) and test(high) for test in tests):
        return True, "met"
    if any(not test(low) and not test(high) for test in tests):
        return False, "MISSED"
    return all(test(median) for test in tests), "unresolved"


def check_targets(training: list, inference: list, quick: bool = False) -> list:
    """One entry per target: what was asked, what was measured, and `status` met / MISSED / unresolved / n/a.

    A timed ratio is judged by `verdict` on its median's interval; `interval` and `range` (min-max) come with it
    (a byte count is exact and has neither). With `quick=True` every target (stated for full-size models) is
    reported as `n/a` with `met=None`, the measured value still shown.
    """
    checks = []

    def add(name, figure, target, passes):
        met, status = verdict(figure, [passes], quick)
        value = figure["median"] if isinstance(figure, dict) else figure
        check = {"target": name, "measured": round(value, 4), "threshold": target, "met": met, "status": status}
        if isinstance(figure, dict):
            check["interval"] = [round(value, 4) for value in figure["interval"]]
            check["range"] = [round(figure["min"], 4), round(figure["max"], 4)]
        checks.append(check)

    for row in training:
        speedup = row["speedup_of_batched"]
        if "vs_memory_sequential" in speedup:
            add(f"train {row['context']}: batched / sequential >= 1.3", speedup["vs_memory_sequential"], 1.3,
                lambda value: value >= 1.3)
        threshold = TARGETS["train_batched_vs_llama_min_at_1024"]
        if row is training[0]:
            add(f"train {row['context']}: batched / full Llama >= {threshold}", speedup["vs_llama_full_context"],
                threshold, lambda value: value >= threshold)
        else:
            add(f"train {row['context']}: batched / full Llama > 1 (ahead)", speedup["vs_llama_full_context"], 1.0,
                lambda value: value > 1.0)
    for row in inference:
        ratios, context = row["ratios"], row["context"]
        if context in TARGETS["prefill_vs_llama_max"]:
            limit = TARGETS["prefill_vs_llama_max"][context]
            add(f"prefill {context}: memory / Llama <= {limit}", ratios["prefill_memory_over_llama"], limit,
                lambda value: value <= limit)
        if context == 4096:
            add("decode 4096: memory / Llama tokens/s >= 1.5", ratios["decode_memory_over_llama"], 1.5,
                lambda value: value >= 1.5)
        expected, tolerance = ratios["kv_bytes_expected_ratio"], TARGETS["kv_bytes_relative_tolerance"]
        add(f"KV {context}: memory / Llama within 5% of (slots+chunk)/context={expected:.4f}",
            ratios["kv_bytes_memory_over_llama"], expected, lambda value: abs(value - expected) <= tolerance * expected)
    return checks


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_spread(figure: dict, scale: float = 1.0, number=fmt) -> str:
    """`median (min-max)` of a spread, each value times `scale` and written by `number`."""
    low, high = number(figure["min"] * scale), number(figure["max"] * scale)
    return f"{number(figure['median'] * scale)} ({low}-{high})"


def fmt_check(check: dict) -> str:
    """One target line: status, name, the measured median and its range over the repeats."""
    measured = f"{check['measured']}" + (f" (median interval {check['interval'][0]} to {check['interval'][1]}, "
                                         f"min-max {check['range'][0]} to {check['range'][1]})"
                                         if "range" in check else "")
    return f"  [{check['status']:>10}] {check['target']}: measured {measured}"


def _load_text(row: dict) -> str:
    values = [v for v in row.get("load_average", []) if v is not None]
    return "-" if not values else "-".join(f"{v:.1f}" for v in values)


TRAINING_COLUMNS = ["memory_batched", "memory_sequential", "llama_full_context", "recurrent_memory"]


def _training_lines(rows: list) -> list:
    header = f"{'context':>8} {'batch':>5} {'chunks':>6} " + " ".join(f"{n:>21}" for n in TRAINING_COLUMNS)
    lines = ["\n(a) training step (fwd + bwd + AdamW), tokens/s: median (min-max)",
             header + f" {'batched/seq':>18} {'batched/llama':>18}  load"]
    for row in rows:
        rate, speedup = row["tokens_per_s"], row["speedup_of_batched"]
        cells = " ".join(f"{fmt_spread(rate[n]) if n in rate else '-':>21}" for n in TRAINING_COLUMNS)
        seq = speedup.get("vs_memory_sequential")
        lines.append(f"{row['context']:>8} {row['batch_size']:>5} {row['num_chunks']:>6} {cells} "
                     f"{fmt_spread(seq) if seq else '-':>18} {fmt_spread(speedup['vs_llama_full_context']):>18}  "
                     f"{_load_text(row)}")
    return lines


def _inference_lines(rows: list) -> list:
    ms = lambda value: f"{value:.1f}"  # noqa: E731
    lines = ["\n(b) inference, batch 1: median (min-max); prefill = time to first token, decode = tokens after the "
             "first / their time",
             f"{'context':>8} {'slots':>5} {'prefill mem ms':>20} {'prefill llama ms':>20} {'ratio':>18} "
             f"{'decode mem tok/s':>18} {'decode llama tok/s':>18} {'ratio':>18} {'KV mem':>10} "
             f"{'KV llama':>11} {'ratio':>7} {'expected':>8}  load"]
    for row in rows:
        mem, full, r = row["memory"], row["llama_full_context"], row["ratios"]
        lines.append(
            f"{row['context']:>8} {row['num_memory_slots']:>5} {fmt_spread(mem['prefill_s'], 1e3, ms):>20} "
            f"{fmt_spread(full['prefill_s'], 1e3, ms):>20} {fmt_spread(r['prefill_memory_over_llama']):>18} "
            f"{fmt_spread(mem['decode_tokens_per_s']):>18} {fmt_spread(full['decode_tokens_per_s']):>18} "
            f"{fmt_spread(r['decode_memory_over_llama']):>18} {mem['kv_cache_bytes']:>10,} "
            f"{full['kv_cache_bytes']:>11,} {r['kv_bytes_memory_over_llama']:>7.4f} "
            f"{r['kv_bytes_expected_ratio']:>8.4f}  {_load_text(row)}")
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
    lines.append("\ntargets (met / MISSED when the median's confidence interval is on one side of the threshold, "
                 "unresolved when it straddles it)")
    lines += [fmt_check(check) for check in result["targets"]]
    lines.append("load = 1-minute load average before-after each measurement; above the thread count, other "
                 "processes shared the CPU and the numbers are noisy")
    if any(check.get("met") is None for check in result["targets"]):
        lines.append("n/a = a target stated for the full sizes, not applicable at --quick sizes")
    lines += [f"note: {note}" for note in settings["notes"]]
    lines += [f"samples ({name}): {text}" for name, text in settings.get("samples", {}).items()]
    return "\n".join(lines)


def format_autoencoder(result: dict) -> str:
    unroll, mixer = result["unroll"], result["mixer_vs_llama"]
    ms = lambda value: f"{value:.3f}"  # noqa: E731
    return "\n".join([
        f"autoencoder benchmark: {result['settings']['device']} {result['settings']['dtype']}, median (min-max) "
        f"over {unroll['speedup']['runs']} rounds",
        f"unroll [{unroll['batch']} x {unroll['hidden']}] -> {unroll['length']} windows: gather "
        f"{fmt_spread(unroll['gather_ms'], number=ms)} ms ({unroll['calls_per_sample']['gather']} calls per sample), "
        f"loop {fmt_spread(unroll['loop_ms'], number=ms)} ms ({unroll['calls_per_sample']['loop']} calls per "
        f"sample), speedup {fmt_spread(unroll['speedup'])}x",
        f"training tokens/s at {mixer['batch']} x {mixer['length']}, d={mixer['hidden']}, {mixer['layers']} layers "
        f"(one step per sample): mixer {fmt_spread(mixer['mixer_tokens_per_s'])} ({mixer['mixer_params']:,} "
        f"params), llama {fmt_spread(mixer['llama_tokens_per_s'])} ({mixer['llama_params']:,} params), "
        f"mixer/llama {fmt_spread(mixer['mixer_over_llama'])}",
    ])
