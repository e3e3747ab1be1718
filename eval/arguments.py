"""Command-line options of `memory-models retention` (the information-retention probe).

Kept apart from the implementation and importing only the standard library, so that `--help` answers without
loading torch. The options of the other evaluation commands live beside their code: `eval/banks/arguments.py`,
`eval/harness/arguments.py`, `eval/benchmarks/arguments.py` and `eval/experiments/arguments.py`.
"""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import add_trust_remote_code

POOLINGS = ("last", "penultimate", "last_nonpad")


def retention_parser() -> argparse.ArgumentParser:
    """The options of `memory-models retention`."""
    parser = argparse.ArgumentParser(prog="memory-models retention", description="Information retention (paper "
                                     "§3, Tables 1-2): how much of its input does an encoder's embedding keep?")
    parser.add_argument("--encoder", required=True, help="folder or Hub id of the encoder (any model)")
    parser.add_argument("--tokenizer", help="tokenizer folder or Hub id (default: the encoder's)")
    parser.add_argument("--context", type=int, nargs="+", default=[16, 64], help="context lengths n_ctx")
    parser.add_argument("--dataset", default="python-docs", help="corpus name or local path (training.data.corpora)")
    parser.add_argument("--steps", type=int, default=1000, help="decoder training steps per context")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--train-documents", type=int, help="training texts (default steps x batch size)")
    parser.add_argument("--eval-documents", type=int, default=200)
    parser.add_argument("--decoder-layers", type=int, default=4)
    parser.add_argument("--decoder-hidden", type=int, default=256)
    parser.add_argument("--decoder-heads", type=int, default=4)
    parser.add_argument("--pooling", default="last", choices=POOLINGS)
    parser.add_argument("--fresh-embedding", action="store_true", help="trainable new token embedding")
    parser.add_argument("--pass-attention-mask", action="store_true", help="give the encoder the padding mask")
    parser.add_argument("--pack", action="store_true", help="probe on full rows of concatenated documents (default: "
                        "each document's first n_ctx tokens, right-padded)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-missing-weights", action="store_true",
                        help="probe a checkpoint whose encoder tensors are incomplete (they stay random)")
    parser.add_argument("--output", help="write the results as JSON here")
    add_trust_remote_code(parser)
    return parser
