"""`memory-models reproduce`: the paper's central effects, measured on held-out data, from one command.

    memory-models reproduce all --output-dir runs/reproduce                   # --scale small, 3 seeds, 2 CPU cores
    memory-models reproduce table1 --seeds 1 --output-dir runs/reproduce-t1   # one part, one seed
    memory-models reproduce fig4d --scale paper --device cuda --output-dir runs/reproduce-paper

Parts (each trains what it needs, once, and evaluates on held-out data):

* `table1`: autoencoders vs causal LMs of the same size and steps (mixer and transformer): the autoencoder's own
  reconstruction, and each frozen encoder's retention probed by a fresh decoder at several contexts (Tables 1-2).
* `fig4d`: memory models trained on blank copy over a frozen autoencoder encoder, a frozen causal-LM encoder and no
  memory: blank-copy and copy accuracy against step (Fig. 4(d) / S8).
* `table3`: the memory model trained with the combined objective vs the causal objective, all trainable and over
  a frozen autoencoder encoder (Table 3's two rows).
* `table4`: on the synthetic `records` corpus, the frozen-autoencoder curriculum then the combined objective vs
  causal-only training, with lm-eval's `records_extraction` / `records_perplexity`, with and without memories, and
  extraction accuracy against how many chunks back the record was stated (Table 4).

Outputs in `--output-dir`: `<part>.json` (`{"part", "settings", "rows": [{"model", "metric", "mean", "std",
"values"}], "targets": [{"name", "value", "target", "met"}], "seconds"}`), `<part>.md`, pictures (`<part>-*.png`),
`reproduce.md` (every finished part), every trained model as a Hub folder with its tokenizer in
`models/<model>-seed<k>/`, and each model's training record in `runs/<model>-seed<k>/`. Seeds train side by side
(one process each); a model already in `models/` with the same settings is reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue as queue_module
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from memory_models.conversion.safe_io import all_ours, claim_folder, locked
from memory_models.eval.experiments import reproduce_parts as parts_module
from memory_models.eval.experiments import reproduce_table4
from memory_models.eval.experiments.arguments import REPRODUCE_PARTS, reproduce_parser
from memory_models.eval.experiments.reproduce_stages import (
    SCALES, Context, Scale, available_cpus, corpus_tokenizer, set_threads,
)
from memory_models.eval.experiments.workers import output_to, worker_manager, worker_pool
from memory_models.training.plot import have_matplotlib, plot_curves, plot_retention

PARTS = {
    "table1": (parts_module.table1, parts_module.table1_targets),
    "fig4d": (parts_module.fig4d, parts_module.fig4d_targets),
    "table3": (parts_module.table3, parts_module.table3_targets),
    "table4": (reproduce_table4.table4, reproduce_table4.table4_targets),
}
TITLES = {"table1": "Table 1: information retention (held-out token accuracy)",
          "fig4d": "Fig. 4(d): blank copy through frozen encoders (held-out accuracy)",
          "table3": "Table 3: combined vs causal objective (held-out accuracy)",
          "table4": "Table 4: records extraction and perplexity (held out)"}
# Table 4's picture draws extraction by distance (its bits per byte are rows of the table, not curves)
CURVES = {"table4": ("Table 4: records extraction by distance (held out)", "chunks between the record and the question")}


# ---------------------------------------------------------------------------------------------- workers
def scale_for(name: str, family: str | None = None) -> Scale:
    """The scale `name`; with `family`, that memory family for Fig. 4(d), Table 3 and Table 4."""
    scale = SCALES[name]
    if family is None:
        return scale
    return replace(scale, memory_families=(family,), records_family=family, table3_family=family)


def run_seed(output_dir: str, scale: Scale, seed: int, parts: list[str], device: str, threads: int,
             tokenizers: dict, messages, log: str | None = None) -> None:
    """Every requested part for one seed, in order; progress and each part's result go to `messages`. With `log`
    (seeds side by side), everything else the seed prints goes to that file, so that the seeds' progress bars and
    library warnings do not interleave on the terminal."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_threads(threads)

    def report(message: str) -> None:
        if log is not None:  # the log keeps the progress beside what it explains
            print(f"[seed {seed}] {message}", flush=True)
        messages.put(("log", seed, message))

    context = Context(Path(output_dir), device, report)
    with output_to(log) if log is not None else contextlib.nullcontext():
        if log is not None:
            print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}: seed {seed} of {', '.join(parts)} ===", flush=True)
        for part in parts:
            start = time.perf_counter()
            result = PARTS[part][0](context, scale, seed, Path(tokenizers[part]))
            messages.put(("done", seed, (part, result, time.perf_counter() - start)))


# ---------------------------------------------------------------------------------------------- aggregation
def aggregate(results: dict[int, dict]) -> list[dict]:
    """Rows `{"model", "metric", "mean", "std", "values"}` over seeds (values in seed order; sd over seeds)."""
    values: dict = {}
    for seed in sorted(results):
        for row in results[seed]["values"]:
            values.setdefault((row["model"], row["metric"]), []).append(row["value"])
    return [{"model": model, "metric": metric, "mean": statistics.fmean(v),
             "std": statistics.stdev(v) if len(v) > 1 else 0.0, "values": v} for (model, metric), v in values.items()]


def markdown(part: str, report: dict) -> str:
    """The part's rows (mean ± sd over seeds, and each seed) and targets as Markdown tables."""
    percent = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"### {TITLES[part]}", "", f"{report['settings']['seeds']} seeds, {report['seconds']:.0f} s "
             f"(scale {report['settings']['scale']}, load average {report['settings']['load_average']})", "",
             "| model | metric | mean ± sd | per seed |", "|---|---|---:|---|"]
    for row in report["rows"]:
        scale = 1 if "perplexity" in row["metric"] or "bits" in row["metric"] else 100
        unit = "" if scale == 1 else "%"
        per_seed = ", ".join(f"{scale * v:.1f}" if scale == 100 else f"{v:.3f}" for v in row["values"])
        mean = f"{scale * row['mean']:.1f}{unit} ± {scale * row['std']:.1f}" if scale == 100 else \
            f"{row['mean']:.3f} ± {row['std']:.3f}"
        lines.append(f"| {row['model']} | {row['metric']} | {mean} | {per_seed} |")
    lines += ["", "| target | value | target | met |", "|---|---:|---|---|"]
    for item in report["targets"]:
        value = item["value"]
        shown = "n/a" if value is None else (percent(value) if abs(value) <= 1.0 and "/" not in item["name"] and
                                             "share" not in item["name"] else f"{value:.3f}")
        lines.append(f"| {item['name']} | {shown} | {item['target']} | {'yes' if item['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def pictures(part: str, results: dict[int, dict], output_dir: Path, title: str) -> list[str]:
    """Retention against context (Table 1) and held-out accuracy curves (the other parts), means over seeds."""
    if not have_matplotlib():
        return []
    written = []
    retention = {}
    for result in results.values():
        for model, rows in result["retention"].items():
            for row in rows:
                retention.setdefault(model, {}).setdefault(row["context"], []).append(row)
    if retention:
        means = {model: [{"context": c, **{k: statistics.fmean(r[k] for r in rows) for k in ("accuracy", "entropy_ratio")}}
                         for c, rows in sorted(by_context.items())] for model, by_context in retention.items()}
        written += plot_retention(means, output_dir / f"{part}-retention", f"{title} (mean of {len(results)} seeds)")
    curves = {}
    for result in results.values():
        for model, metrics in result["curves"].items():
            for metric, points in metrics.items():
                curves.setdefault(model, {}).setdefault(metric, []).append(points)
    if curves:
        curve_title, xlabel = CURVES.get(part, (title, "optimizer step"))
        written += plot_curves(curves, output_dir / f"{part}-curves", curve_title, xlabel=xlabel)
    positions = {}
    for result in results.values():
        for model, values in result.get("positions", {}).items():
            positions.setdefault(model, {}).setdefault("blank-copy accuracy", []).append(list(enumerate(values)))
    if positions:
        written += plot_curves(positions, output_dir / f"{part}-positions", f"{title}, by position in the chunk",
                               xlabel="position of the copied token in its chunk")
    return [str(path) for path in written if str(path).endswith(".png")]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def finish_part(part: str, results: dict, seconds: dict, settings: dict, output_dir: Path, scale: Scale) -> dict:
    """Aggregate a part's seeds, check its targets, write `<part>.json`, `<part>.md` and its pictures."""
    rows = aggregate(results)
    means = {(row["model"], row["metric"]): row["mean"] for row in rows}
    per_seed = {(row["model"], row["metric"]): row["values"] for row in rows}
    report = {"part": part, "settings": {**settings, "load_average": load_average(),
                                         "seconds_per_seed": {str(k): round(v, 1) for k, v in sorted(seconds.items())}},
              "rows": rows, "targets": PARTS[part][1](means, scale, per_seed),
              "seconds": round(max(seconds.values()), 1)}
    report["pictures"] = pictures(part, results, output_dir, TITLES[part])
    (output_dir / f"{part}.json").write_text(json.dumps(report, indent=2))
    (output_dir / f"{part}.md").write_text(markdown(part, report))
    return report


# ---------------------------------------------------------------------------------------------- driver
def _print_seed(part: str, seed: int, result: dict, seconds: float) -> None:
    print(f"[{part}] seed {seed} done in {seconds:.0f} s:", flush=True)
    for row in result["values"]:
        print(f"  {row['model']} | {row['metric']}: {row['value']:.4f}", flush=True)


class _Immediate:
    """A message queue for a worker running in this process: every message is handled as it is put."""

    def __init__(self, handle):
        self.put = lambda message: handle(*message)


def _collect(messages, futures, handle, logs: list | None = None) -> None:
    """Hand every message of the workers (`futures[k]` runs seed k) to `handle` until all of them are done. A seed
    that fails is announced at once, with its log, while the others go on (what they train is kept for a rerun);
    its error is raised when they are done."""
    announced = set()
    while True:
        try:
            handle(*messages.get(timeout=1.0))
        except queue_module.Empty:
            if all(future.done() for future in futures):
                for future in futures:
                    future.result()
                return
        for seed, future in enumerate(futures):
            error = future.exception() if future.done() and seed not in announced else None
            if error is not None:
                announced.add(seed)
                where = f" (its output and traceback: {logs[seed]})" if logs else ""
                print(f"[seed {seed}] failed: {type(error).__name__}: {error}{where}; the other seeds go on, then "
                      "the command stops with this error", flush=True)


def run(args) -> dict:
    """Run the requested parts for `args.seeds` seeds; returns `{part: report}`. `--output-dir` is new, empty or
    a reproduction folder (ours, where a rerun resumes), held locked while the command runs."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
    output_dir = claim_folder(args.output_dir, kind="reproduce", earlier=_earlier_reproduction)
    with locked(output_dir):
        return _run(args, output_dir)


def _earlier_reproduction(folder: Path) -> bool:
    """A folder `reproduce` wrote before it marked its folders: its trained models (`models/<name>-seed<k>/`) are
    all ours."""
    return (folder / "models").is_dir() and all_ours((folder / "models").iterdir())


def _run(args, output_dir: Path) -> dict:
    device = args.device if args.device != "auto" else ("cuda" if _cuda() else "cpu")
    parts = list(REPRODUCE_PARTS[:-1]) if args.part == "all" else [args.part]
    scale = scale_for(args.scale, args.family)
    tokenizers = {part: str(reproduce_table4.records_tokenizer(output_dir, scale) if part == "table4" else
                            corpus_tokenizer(output_dir, scale.dataset, scale.vocab_size, scale.train_documents))
                  for part in parts}  # on the documents the scale trains on (tiny: 24; small, paper: all)
    jobs = args.jobs or (1 if device != "cpu" else args.seeds)
    threads = max(1, available_cpus() // min(jobs, args.seeds))
    settings = {"scale": args.scale, "family": args.family, "seeds": args.seeds, "device": device, "jobs": jobs,
                "threads_per_job": threads,
                "command": "memory-models reproduce " + " ".join(sys.argv[2:] if args.argv is None else args.argv)}
    print(f"reproduce {', '.join(parts)} at scale {args.scale}: {args.seeds} seeds, {jobs} side by side "
          f"({threads} threads each), device {device}; load average {load_average()}", flush=True)
    results, seconds, reports = {p: {} for p in parts}, {p: {} for p in parts}, {}

    def handle(kind, seed, payload):
        if kind == "log":
            print(f"[seed {seed}] {payload}", flush=True)
            return
        part, result, part_seconds = payload
        results[part][seed], seconds[part][seed] = result, part_seconds
        _print_seed(part, seed, result, part_seconds)
        if len(results[part]) == args.seeds:
            reports[part] = finish_part(part, results[part], seconds[part], settings, output_dir, scale)
            print("\n" + markdown(part, reports[part]), flush=True)
            (output_dir / "reproduce.md").write_text("\n".join(markdown(p, r) for p, r in reports.items()))

    work = [(str(output_dir), scale, seed, parts, device, threads, tokenizers) for seed in range(args.seeds)]
    if jobs == 1:
        for task in work:
            run_seed(*task, _Immediate(handle))
    else:
        logs = output_dir / "logs"
        logs.mkdir(exist_ok=True)
        print(f"each seed's own output (progress bars, library warnings) goes to {logs}/seed-K.log", flush=True)
        with worker_manager() as manager, worker_pool(min(jobs, args.seeds)) as pool:
            messages = manager.Queue()
            seed_logs = [str(logs / f"seed-{seed}.log") for seed in range(args.seeds)]
            _collect(messages, [pool.submit(run_seed, *task, messages, seed_logs[task[2]]) for task in work], handle,
                     seed_logs)
    print(f"wrote {', '.join(f'{p}.json' for p in reports)} and reproduce.md in {output_dir}", flush=True)
    return reports


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv=None) -> int:
    """`memory-models reproduce PART --output-dir DIR [--seeds N] [--device cuda] [--scale small|paper]`."""
    args = reproduce_parser().parse_args(argv)
    args.argv = argv
    reports = run(args)
    return 0 if reports else 1


if __name__ == "__main__":
    sys.exit(main())
