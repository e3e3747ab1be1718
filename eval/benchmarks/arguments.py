"""Command-line options of the benchmarks (`memory-models benchmark NAME`,
`python -m memory_models.eval.benchmarks NAME`).

Kept apart from the workloads and importing only the standard library, so that `--help` answers without
loading torch. `eval/benchmarks/cli.py` maps each name to its workload.
"""

from __future__ import annotations

import argparse

BENCHMARKS = {
    "memory": "memory model vs sequential loop, full-context Llama and RMT",
    "autoencoder": "gather vs loop unroll; masked mixer vs Llama training",
    "convert": "convert a Llama-3.2-1B-shaped checkpoint; LoRA vs full training",
    "long-context": "TTFT, decode and KV cache from 4k to 32k tokens: bank, on the fly, Llama",
    "rmt-generation": "RMT generate(): segment cache vs whole-prefix recompute",
    "banks": "memory banks: encode tokens/s for 1 and 2 processes, peak RSS and time to first token vs bank size",
    "checkpointing": "masked mixer: training-step memory with and without gradient checkpointing",
    "serving": "vLLM server: TTFT and tokens/s, bank vs full-context Llama, 1 and 8 concurrent requests",
    "objectives": "training steps per objective: the decoder on the chunks with targets only vs on every chunk",
    "allocator": "CPU training steps: glibc's malloc defaults vs freed memory kept for reuse (fresh process each)",
}


def _memory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", nargs="+", choices=["training", "inference"], default=None,
                        help="what to measure (default: both)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per decode measurement")


def _long_context_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="context lengths in tokens")
    parser.add_argument("--full-context-max", type=int, default=None,
                        help="longest context for the full-context Llama (memory grows with the square)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per decode measurement")
    parser.add_argument("--decode-repeats", type=int, default=None,
                        help="rounds of the back-to-back bank calls that time the memory model's decode (default 100)")


def _banks_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--documents", type=int, nargs="+", default=None, help="bank sizes (documents)")
    parser.add_argument("--throughput-documents", type=int, default=None, help="corpus size of the throughput runs")
    parser.add_argument("--shard-size", type=int, default=None, help="documents per shard")
    parser.add_argument("--workdir", default=None, help="keep the model, corpus and banks here (default: a "
                        "temporary folder, removed at the end)")


def _serving_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="context lengths in tokens")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None, help="requests sent at once")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per request")
    parser.add_argument("--vllm-python", default=None, help="the vLLM environment's Python (default: as "
                        "`memory-models serve` finds it)")
    parser.add_argument("--vllm-arg", action="append", default=None,
                        help="an option for both vLLM servers, e.g. --vllm-arg=--enforce-eager (repeatable)")
    parser.add_argument("--workdir", default=None, help="keep the models, bank and server logs here (default: a "
                        "temporary folder, removed at the end)")


OPTIONS = {"memory": _memory_options, "long-context": _long_context_options, "banks": _banks_options,
           "serving": _serving_options}


def benchmark_parser(prog: str = "memory-models benchmark") -> argparse.ArgumentParser:
    """The options of every benchmark: the common ones, then each workload's own."""
    parser = argparse.ArgumentParser(prog=prog, description="Speed and memory benchmarks: a table on stdout and a "
                                     "JSON file, with a plot beside it.")
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="NAME")
    for name, summary in BENCHMARKS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("--quick", action="store_true", help="tiny sizes (tests, smoke runs)")
        sub.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        sub.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
        sub.add_argument("--output", default=None, help=f"JSON path (default benchmark-{name}.json); the plot "
                         "goes beside it (.png, .svg)")
        sub.add_argument("--repeats", type=int, default=None,
                         help="timed repeats per measurement (reported: median and min-max)")
        sub.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls per measurement")
        sub.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
        OPTIONS.get(name, lambda _: None)(sub)
    return parser
