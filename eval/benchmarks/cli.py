"""Speed and memory benchmarks: a table on stdout and a JSON file (plus a plot beside it).

    python -m memory_models.eval.benchmarks memory [--quick] [--device cpu|cuda] [--dtype fp32|bf16] \\
        [--output bench.json]
    python -m memory_models.eval.benchmarks autoencoder | convert | long-context | rmt-generation | checkpointing \\
        | banks | serving | objectives | allocator [--quick] ...

Each workload is a module of this package (`memory`, `autoencoder`, `convert`, `long_context`,
`rmt_generation`, `checkpointing`, `banks`, `serving`, `objectives`, `allocator`) with `run(args) -> dict`; this
module maps the names to them (`WORKLOADS`). Every workload takes the common options --quick, --device, --dtype (bf16 = autocast), --output,
--repeats, --warmup and --threads (`arguments.py`), and reports every timed figure as the median and the min-max
over its repeats (`timing.spread`). The timing harness is `timing.py`, the shared model builders `models.py`, the
targets and tables `reports.py`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from memory_models.conversion.safe_io import CREATED_BY, check_result_file
from memory_models.eval.benchmarks import (
    allocator, autoencoder, banks, checkpointing, convert, long_context, memory, objectives, rmt_generation, serving,
)
from memory_models.eval.benchmarks.arguments import benchmark_parser
from memory_models.eval.benchmarks.reports import format_autoencoder, format_memory_table
from memory_models.eval.benchmarks.timing import load_average
from memory_models.training.plot import plot_beside, plot_benchmark


@dataclass
class Workload:
    """A benchmark: `run(args) -> dict` (JSON-ready), `format(result) -> str` and an optional
    `plot(result, output_stem)` drawn beside the JSON. Its options are in `eval/benchmarks/arguments.py`."""

    run: Callable
    format: Callable
    plot: Callable | None = None


WORKLOADS: dict[str, Workload] = {
    "memory": Workload(memory.run, format_memory_table, plot_benchmark),
    "autoencoder": Workload(autoencoder.run, format_autoencoder),
    "convert": Workload(convert.run, convert.format_result),
    "long-context": Workload(long_context.run, long_context.format_table),
    "rmt-generation": Workload(rmt_generation.run, rmt_generation.format_rmt_generation),
    "checkpointing": Workload(checkpointing.run, checkpointing.format_checkpointing),
    "banks": Workload(banks.run, banks.format_banks),
    "serving": Workload(serving.run, serving.format_table),
    "objectives": Workload(objectives.run, objectives.format_table),
    "allocator": Workload(allocator.run, allocator.format_table),
}


def _load_line(settings: dict) -> str:
    before, after = ("?" if value is None else f"{value:.2f}" for value in settings["load_average"])
    return (f"1-minute load average {before} before, {after} after, on {settings['threads']} threads "
            f"(above the thread count, other processes shared the CPU)")


def main(argv=None) -> int:
    """`memory-models benchmark NAME ...`: run one workload, write its JSON (and plot), print its table."""
    args = benchmark_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    workload = WORKLOADS[args.benchmark]
    output = check_result_file(args.output or f"benchmark-{args.benchmark}.json")  # new, or a result of ours
    load = load_average()
    result = {**CREATED_BY, **workload.run(args)}
    result["settings"]["load_average"] = [load, load_average()]  # the whole run's, before and after
    with open(output, "w") as handle:  # before printing, so a closed stdout cannot lose the measurements
        json.dump(result, handle, indent=2)
    print(workload.format(result))
    print(_load_line(result["settings"]))
    plots = plot_beside(output, lambda stem: workload.plot(result, stem)) if workload.plot else []
    print(f"\nwrote {', '.join(map(str, [output, *plots]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
