"""Command-line options of the lm-eval commands (`memory-models eval`, `lookalike`).

Kept apart from the implementations and importing only the standard library, so that `--help` answers without
loading torch or lm-eval.
"""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import add_trust_remote_code


def compare_parser() -> argparse.ArgumentParser:
    """The options of `memory-models eval`."""
    parser = argparse.ArgumentParser(prog="memory-models eval", allow_abbrev=False, description="lm-eval tasks on "
                                     "one or more saved models, side by side (the shape of the paper's Table 4).")
    parser.add_argument("--model", action="append", required=True, metavar="DIR",
                        help="a saved causal model (repeat for a side-by-side comparison)")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks/groups, e.g. mmlu,longbench,swde")
    parser.add_argument("--no-memory", action="store_true", help="also evaluate each memory model with memories ablated")
    parser.add_argument("--limit", type=float, help="documents per task (lm-eval --limit)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--include-path", metavar="DIR", help="folder of extra task YAMLs (e.g. the look-alikes)")
    parser.add_argument("--tokenizer", metavar="DIR", help="default: each model's own folder")
    parser.add_argument("--max-length", type=int, help="context lm-eval truncates to (default: the model's)")
    parser.add_argument("--rolling-context", type=int, metavar="N",
                        help="read memory models through the rolling memory window, advertising N tokens (lets "
                             "generation tasks run on models trained on a short window)")
    parser.add_argument("--num-fewshot", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log-samples", action="store_true", help="keep every document's request and answer")
    parser.add_argument("--output-dir", default="eval-results")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --output-dir that "
                        "memory-models did not create, or created as another kind")
    parser.add_argument("--seed", type=int, default=0)
    add_trust_remote_code(parser)
    return parser


def lookalike_parser() -> argparse.ArgumentParser:
    """The options of `memory-models lookalike`."""
    parser = argparse.ArgumentParser(prog="memory-models lookalike", description="Offline look-alikes of lm-eval's "
                                     "mmlu, longbench and swde: local data in the exact schema of the Hub datasets.")
    parser.add_argument("--output", required=True, help="folder to write (new, or written by this command)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output folder that "
                        "memory-models did not create, or created as another kind")
    parser.add_argument("--docs", type=int, default=4, help="documents per task")
    parser.add_argument("--context-chars", type=int, default=3000, help="characters per long context")
    parser.add_argument("--seed", type=int, default=0)
    return parser
