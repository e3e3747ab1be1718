"""Speed and memory benchmarks: a table on stdout and a JSON file (plus a plot beside it).

    python -m eval.benchmarks memory [--quick] [--device cpu|cuda] [--dtype fp32|bf16] [--output bench.json]
    python -m eval.benchmarks autoencoder | convert | long-context | rmt-generation | banks [--quick] ...

Each workload is a module of this package (`memory`, `autoencoder`, `convert`, `long_context`,
`rmt_generation`, `banks`) with `run(args) -> dict`; this module registers them as `SUBCOMMANDS` and gives every one the
common options --quick, --device, --dtype (bf16 = autocast), --output, --repeats, --warmup and --threads.
The timing harness is `timing.py`, the shared model builders `models.py`, the targets and tables `reports.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from eval.benchmarks import autoencoder, banks, convert, long_context, memory, rmt_generation
from eval.benchmarks.reports import format_autoencoder, format_memory_table
from training.plot import plot_beside, plot_benchmark


@dataclass
class Subcommand:
    """A benchmark: `run(args) -> dict` (JSON-ready), `format(result) -> str`, extra CLI arguments and an
    optional `plot(result, output_stem)` drawn beside the JSON."""

    run: Callable
    format: Callable
    add_arguments: Callable = lambda parser: None
    help: str = ""
    plot: Callable | None = None


SUBCOMMANDS: dict[str, Subcommand] = {
    "memory": Subcommand(memory.run, format_memory_table, memory.add_arguments,
                         "memory model vs sequential loop, full-context Llama and RMT", plot=plot_benchmark),
    "autoencoder": Subcommand(autoencoder.run, format_autoencoder,
                              help="gather vs loop unroll; masked mixer vs Llama training"),
    "convert": Subcommand(convert.run, convert.format_result,
                          help="convert a Llama-3.2-1B-shaped checkpoint; LoRA vs full training"),
    "long-context": Subcommand(long_context.run, long_context.format_table, long_context.add_arguments,
                               "TTFT, decode and KV cache from 4k to 32k tokens: bank, on the fly, Llama"),
    "rmt-generation": Subcommand(rmt_generation.run, rmt_generation.format_rmt_generation,
                                 help="RMT generate(): segment cache vs whole-prefix recompute"),
    "banks": Subcommand(banks.run, banks.format_banks, banks.add_arguments,
                        "memory banks: encode tokens/s for 1 and 2 processes, peak RSS and TTFT vs bank size"),
}


def build_parser(prog: str = "python -m eval.benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help)
        sub.add_argument("--quick", action="store_true", help="tiny sizes (tests, smoke runs)")
        sub.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        sub.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
        sub.add_argument("--output", default=None, help=f"JSON path (default benchmark-{name}.json); the plot "
                         "goes beside it (.png, .svg)")
        sub.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
        sub.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls per measurement")
        sub.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
        subcommand.add_arguments(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    subcommand = SUBCOMMANDS[args.benchmark]
    result = subcommand.run(args)
    output = args.output or f"benchmark-{args.benchmark}.json"
    with open(output, "w") as handle:  # before printing, so a closed stdout cannot lose the measurements
        json.dump(result, handle, indent=2)
    print(subcommand.format(result))
    plots = plot_beside(output, lambda stem: subcommand.plot(result, stem)) if subcommand.plot else []
    print(f"\nwrote {', '.join(map(str, [output, *plots]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
