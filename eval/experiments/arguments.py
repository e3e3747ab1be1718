"""Command-line options of the experiments (`memory-models demo`, `paper-check`, `table4`, `launcher-check`).

Kept apart from the implementations and importing only the standard library, so that `--help` answers without
loading torch.
"""

from __future__ import annotations

import argparse

DEFAULT_PROMPT = "The import statement"


def demo_parser() -> argparse.ArgumentParser:
    """The options of `memory-models demo`."""
    parser = argparse.ArgumentParser(prog="memory-models demo", description="The main job, offline on one CPU: a "
                                     "memory transformer and its no-memory control trained on the embedded corpus, "
                                     "exported, reloaded without this package, and generating.")
    parser.add_argument("--output-dir", default="memory-demo")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each of the two models")
    parser.add_argument("--hidden", type=int, default=96, help="encoder and decoder width")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--slots", type=int, default=4, help="memory slots (context = chunk size x slots)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=2048, help="tokenizer trained for the demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model (smoke test)")
    return parser


def paper_check_parser() -> argparse.ArgumentParser:
    """The options of `memory-models paper-check`."""
    parser = argparse.ArgumentParser(prog="memory-models paper-check", description="Does it learn what the paper "
                                     "says? Small-scale orderings of Table 1 (a) and Table 3 (b).")
    parser.add_argument("--output-dir", default="runs/paper-check")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every model")
    parser.add_argument("--probe-steps", type=int, default=1000, help="decoder steps of each retention probe")
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--context", type=int, default=16, help="retention context (part a)")
    parser.add_argument("--chunk-size", type=int, default=8, help="memory chunk (part b; 4 slots)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=["a", "b", "all"], default="all", help="retention (a), memory (b)")
    return parser


def table4_parser() -> argparse.ArgumentParser:
    """The options of `memory-models table4`."""
    parser = argparse.ArgumentParser(prog="memory-models table4", description="Table 4 at small scale: does "
                                     "combined (causal + copy) training help information retrieval?")
    parser.add_argument("--output-dir", default="runs/table4")
    parser.add_argument("--steps", type=int, default=800, help="training steps of each model")
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--train-documents", type=int, default=2000, help="records training documents")
    parser.add_argument("--limit", type=int, default=200, help="documents per evaluation task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def launcher_check_parser() -> argparse.ArgumentParser:
    """The options of `memory-models launcher-check`."""
    parser = argparse.ArgumentParser(prog="memory-models launcher-check", description="Check that a run's numbers "
                                     "do not depend on the launcher (one process, accumulation, torchrun, "
                                     "accelerate).")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--preset", default="memory-transformer-tiny")
    parser.add_argument("--objective", default="combined")
    parser.add_argument("--context", type=int, help="tokens per row (default: the model's context)")
    parser.add_argument("--steps", type=int, default=2)
    return parser
