"""Table 4 at small scale: does combined (causal + copy) training help information retrieval? (benchmark run)

    memory-models table4 --output-dir runs/table4                       # ~20-40 min on 2 CPU cores
    memory-models table4 --steps 5000 --hidden 256 --output-dir runs/table4-gpu --device cuda

The paper (Table 4) trains the same frozen-encoder memory transformer causally and with the combined
objective, then finds SWDE 0.00 -> 0.81 (`contains`) and LongBench code completion 13.2 -> 16.5 while
MMLU, HellaSwag and ARC barely move. Here, on the `records` corpus (exact key/value facts, training.data.corpora):

1. a byte-level BPE is trained on the records train split;
2. the same memory transformer (Llama encoder and decoder, `--slots` x `--chunk-size`) is trained with the
   `clm` and the `combined` objective for equal steps and seeds (`memory-models train` code path);
3. both are evaluated with `memory-models eval` (lm-eval) on `records_extraction` (SWDE-style: the value of
   a key of a record stated earlier in the context, i.e. in an earlier chunk; metric `contains`) and
   `records_perplexity` (general: bits per byte on held-out records), with and without their memories.

Writes `table4.json` and the `memory-models eval` folder (`eval/comparison.md`, per-model JSONs).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from transformers import set_seed

from configuration import build_model
from eval.experiments.arguments import table4_parser
from eval.experiments.demo import memory_config
from eval.harness import compare as evaluate
from eval.harness.arguments import compare_parser
from training import train
from training.data.corpora import records_documents
from training.data.tokenizer import save_tokenizer, train_tokenizer

TASKS = "records_extraction,records_perplexity"


def records_tokenizer(output_dir: Path, vocab_size: int, documents: int) -> Path:
    """A byte-level BPE trained on the records train split (reused when already there)."""
    folder = output_dir / f"tokenizer-records-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_tokenizer(records_documents(documents, 0, "train"), vocab_size), folder)
    return folder


def train_memory_model(args, objective: str, tokenizer_dir: Path) -> Path:
    """The same memory transformer and seed, trained with `objective` through `memory-models train`."""
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    set_seed(args.seed)
    model = build_model(memory_config(args, tokenizer, no_memory=False))
    run_dir = Path(args.output_dir) / f"memory-{objective}"
    options = ["--output-dir", str(run_dir), "--preset", "memory-transformer-tiny", "--objective", objective,
               "--dataset", "records", "--pack", "--tokenizer", str(tokenizer_dir),
               "--context", str(args.slots * args.chunk_size), "--max-steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--learning-rate",
               str(args.learning_rate), "--eval-steps", str(args.steps), "--save-steps", str(args.steps),
               "--train-documents", str(args.train_documents), "--eval-documents", "100",
               "--warmup_steps", str(max(1, args.steps // 20)), "--logging_steps", str(max(1, args.steps // 10))]
    parsed, extras = train.parse_args(options)
    train.run(parsed, extras, model=model)
    return run_dir / "final"


def run(args) -> dict:
    """Train both models, evaluate them with and without memories, write `table4.json`; returns its content."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if min(args.steps, args.hidden, args.layers, args.chunk_size, args.slots, args.limit) < 1:
        raise ValueError(f"sizes, steps and --limit must be positive, got {vars(args)}")
    start = time.perf_counter()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = records_tokenizer(output_dir, args.vocab_size, args.train_documents)
    finals = {objective: train_memory_model(args, objective, tokenizer_dir) for objective in ("clm", "combined")}
    eval_args = compare_parser().parse_args(
        ["--model", str(finals["clm"]), "--model", str(finals["combined"]), "--tasks", TASKS, "--no-memory",
         "--limit", str(args.limit), "--batch-size", "16", "--device", args.device,
         "--output-dir", str(output_dir / "eval")])
    summary = evaluate.run(eval_args)
    result = {"settings": vars(args), "models": {label: entry["metrics"] for label, entry in summary["models"].items()},
              "seconds": round(time.perf_counter() - start, 1)}
    (output_dir / "table4.json").write_text(json.dumps(result, indent=2))
    print(f"\n({result['seconds']:.0f} s) wrote {output_dir / 'table4.json'}")
    return result


def main(argv=None) -> int:
    """`memory-models table4`."""
    run(table4_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
