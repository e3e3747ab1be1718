"""CPU training steps with glibc's default `malloc` settings against freed memory kept for reuse
(`training.allocator.keep_freed_memory`, which `memory-models` applies in every process it runs).

`python -m memory_models.eval.benchmarks allocator [--quick]`. A `mallopt` setting holds for the whole process and
cannot be undone, so every sample runs in a fresh spawned process: it builds the model (seed 0), takes the warm-up
steps, then times `--steps` training steps (forward, backward, AdamW) on one batch and counts the page faults
they take (`ru_minflt`). The two settings alternate over the rounds, and the speed-up is the median and min-max of
the per-round ratios (`timing.paired_ratio`). Both settings must end on the same loss, bit for bit (checked every
round: the setting changes where memory comes from, never the arithmetic). Cases: the `small` scale's memory
transformer on the combined objective (Table 3 and 4's stages) and on blank copy over a frozen encoder (Fig. 4(d)),
and the memory mixer on the combined objective; batch 32 and the 2,048-token vocabulary of `reproduce`'s `small`
scale, one thread each (as `reproduce` trains its seeds).
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from memory_models.eval.benchmarks.objectives import Case, case_model_and_batch
from memory_models.eval.benchmarks.reports import fmt_spread
from memory_models.eval.benchmarks.timing import paired_ratio, progress, settings, spread
from memory_models.eval.experiments.reproduce_stages import SCALES
from memory_models.training.allocator import keep_freed_memory

CASES = (Case("memory-transformer-small", "combined", False), Case("memory-transformer-small", "blank_copy", True),
         Case("memory-mixer-small", "combined", False))
QUICK_CASES = (replace(CASES[0], preset="memory-transformer-tiny"),)
SETTINGS = {"glibc defaults": False, "freed memory kept": True}
VOCAB_SIZE = SCALES["small"].vocab_size  # the tokenizer `reproduce` trains at `small`


def train_steps(case: Case, rows: int, steps: int, warmup: int, threads: int, keep: bool) -> dict:
    """In a fresh process: seconds and page faults per training step of `case`, and the last step's loss."""
    kept = keep_freed_memory() if keep else False
    torch.set_num_threads(threads)
    model, batch = case_model_and_batch(case, rows, vocab_size=VOCAB_SIZE)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(warmup):
        step()
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    losses = [step() for _ in range(steps)]
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"seconds_per_step": seconds / steps, "page_faults_per_step": faults / steps, "loss": losses[-1],
            "kept": kept}


def in_fresh_process(*args) -> dict:
    """`train_steps(*args)` in a newly spawned interpreter (its malloc settings its own)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(train_steps, *args).result()


def measure(case: Case, rows: int, steps: int, repeats: int, warmup: int, threads: int) -> dict:
    """Both settings of `case` in `repeats` interleaved rounds."""
    samples = {name: [] for name in SETTINGS}
    for index in range(repeats):
        progress(f"{case.preset} {case.objective}: round {index + 1}/{repeats}")
        for name, keep in SETTINGS.items():
            samples[name].append(in_fresh_process(case, rows, steps, warmup, threads, keep))
        if not samples["freed memory kept"][-1]["kept"]:
            raise RuntimeError("keep_freed_memory() changed nothing here (not glibc?): nothing to compare")
        losses = {name: runs[-1]["loss"] for name, runs in samples.items()}
        if len(set(losses.values())) != 1:  # the figures are never written
            raise RuntimeError(f"{case.preset} {case.objective}: the settings ended on different losses {losses}")
    kept = samples["freed memory kept"]
    seconds = {name: [sample["seconds_per_step"] for sample in runs] for name, runs in samples.items()}
    default, kept_seconds = (seconds[name] for name in SETTINGS)
    return {**vars(case), "batch_rows": rows, "loss": kept[-1]["loss"],
            "seconds_per_step": {name: spread(values) for name, values in seconds.items()},
            "page_faults_per_step": {name: spread([sample["page_faults_per_step"] for sample in runs])
                                     for name, runs in samples.items()},
            "speedup": paired_ratio(default, kept_seconds)}


def format_table(result: dict) -> str:
    two = lambda value: f"{value:.2f}"  # noqa: E731
    ms = lambda value: f"{1000 * value:.1f}"  # noqa: E731
    whole = lambda value: f"{value:,.0f}"  # noqa: E731
    lines = ["training step (ms) and page faults per step, glibc's malloc defaults vs freed memory kept "
             "(median (min-max); the same loss, checked; one fresh process per sample)",
             "| preset | objective | ms, defaults | ms, kept | page faults, defaults | page faults, kept | speed-up |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for case in result["cases"]:
        default, kept = (case["seconds_per_step"][name] for name in SETTINGS)
        faults_default, faults_kept = (case["page_faults_per_step"][name] for name in SETTINGS)
        lines.append(f"| {case['preset']} | {case['objective']} | {fmt_spread(default, number=ms)} | "
                     f"{fmt_spread(kept, number=ms)} | {fmt_spread(faults_default, number=whole)} | "
                     f"{fmt_spread(faults_kept, number=whole)} | {fmt_spread(case['speedup'], number=two)} |")
    return "\n".join(lines)


def run(args) -> dict:
    """Every case of `CASES` (`QUICK_CASES`: the tiny memory transformer, batch 2, 2 steps)."""
    if args.device != "cpu" or args.dtype != "fp32":
        raise ValueError(f"the allocator benchmark measures CPU training in fp32, got --device {args.device} "
                         f"--dtype {args.dtype}")
    repeats = args.repeats or (1 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    rows, steps = (2, 2) if args.quick else (32, 20)
    threads = args.threads or 1
    cases = [measure(case, rows, steps, repeats, warmup, threads) for case in (QUICK_CASES if args.quick else CASES)]
    samples = {"step": f"{repeats} rounds, each setting in a fresh process per round: {warmup} warm-up + {steps} "
                       f"timed training steps of {rows} rows (combined: {2 * rows}), {threads} thread(s)"}
    return {"benchmark": "allocator", "settings": settings(args, samples=samples, threads=threads), "cases": cases}
