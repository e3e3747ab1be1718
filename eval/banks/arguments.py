"""Command-line options of the memory-bank commands (`memory-models encode`, `verify`, `generate`,
`bank-retention`).

Kept apart from the implementations and importing only the standard library, so that `--help` answers without
loading torch.
"""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import add_trust_remote_code, positive_int


def encode_parser() -> argparse.ArgumentParser:
    """The options of `memory-models encode`."""
    parser = argparse.ArgumentParser(prog="memory-models encode", description="Encode a corpus into a memory bank, "
                                     "in one process or in many (torchrun / accelerate launch: each rank encodes "
                                     "every N-th shard).")
    parser.add_argument("--model", required=True, help="memory model folder or Hub id")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--dataset", required=True,
                        help="save_to_disk folder, local .txt/.json/.jsonl/.parquet/.csv file or folder (streamed), "
                             "'python-docs', 'records', or a Hub dataset id (streamed)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--id-column", default="id", help="document ids (default: row numbers if absent)")
    parser.add_argument("--num-documents", type=positive_int, default=None, help="only the first N documents")
    parser.add_argument("--output", required=True, help="bank folder (new, or an unfinished bank to resume)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="chunks per encoder call")
    parser.add_argument("--shard-size", type=positive_int, default=256,
                        help="documents per shard: the unit of work per process, of resuming and of reading")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output folder that "
                        "memory-models did not create, or created as another kind (a memory bank is resumed or "
                        "refused, never replaced, without it)")
    add_trust_remote_code(parser)
    return parser


def verify_parser() -> argparse.ArgumentParser:
    """The options of `memory-models verify`."""
    parser = argparse.ArgumentParser(prog="memory-models verify", description="Check every shard and the index of "
                                     "a memory bank against the SHA-256 recorded when they were written.")
    parser.add_argument("bank", help="memory bank folder (from `memory-models encode`)")
    return parser


def generate_parser() -> argparse.ArgumentParser:
    """The options of `memory-models generate`."""
    parser = argparse.ArgumentParser(prog="memory-models generate", description="Continue a prompt with a memory "
                                     "model, optionally reading a document from a memory bank.")
    parser.add_argument("--model", required=True, help="memory model folder or Hub id")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--memories", default=None, help="memory bank folder (from `memory-models encode`)")
    parser.add_argument("--document", nargs="+", default=None,
                        help="document id(s) in the bank (needs --memories); with several, one JSON line per answer")
    parser.add_argument("--memory-window", choices=["bounded", "rolling"], default="rolling",
                        help="the memory window to generate with (default rolling: the same tokens as bounded "
                        "wherever bounded fits, and any length beyond it)")
    parser.add_argument("--max-context", type=positive_int, default=None,
                        help="tokens (prompt, memories and new tokens) allowed under --memory-window rolling "
                        "(default: the model's max_context, else 32768)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=32)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server", default=None, help="generate through a vLLM server of this model "
                        "(`memory-models serve`), e.g. http://127.0.0.1:8000: the same tokens, computed there")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the server may stay silent: "
                        "connecting, or between two pieces of an answer (--server)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="documents in flight at once (--server with several --document; default 8)")
    parser.add_argument("--stream", action="store_true", help="print the answer as the server sends it (--server, "
                        "one document)")
    add_trust_remote_code(parser)
    return parser


def read_back_parser() -> argparse.ArgumentParser:
    """The options of `memory-models bank-retention`."""
    parser = argparse.ArgumentParser(prog="memory-models bank-retention", description="How much of its text a "
                                     "memory bank still holds: a blank-copy read-out of its memories.")
    parser.add_argument("--model", required=True, help="the memory model that made the bank (folder or Hub id)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--memories", required=True, help="memory bank folder")
    parser.add_argument("--num-documents", type=positive_int, default=None, help="only the first N documents")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="spans per decoder call")
    parser.add_argument("--output", default=None, help="JSON file for the full result")
    add_trust_remote_code(parser)
    return parser
