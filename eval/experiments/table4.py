"""Table 4 at small scale: does combined (causal + copy) training help information retrieval? (benchmark run)

    python -m eval.experiments.table4 --output-dir runs/table4                       # ~20-40 min on 2 CPU cores
    python -m eval.experiments.table4 --steps 5000 --hidden 256 --output-dir runs/table4-gpu --device cuda

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

import argparse
import json
import os
import time
from pathlib import Path

TASKS = "records_extraction,records_perplexity"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.experiments.table4", description=__doc__.split("\n\n")[0])
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


def records_tokenizer(output_dir: Path, vocab_size: int, documents: int) -> Path:
    """A byte-level BPE trained on the records train split (reused when already there)."""
    from training.data.corpora import records_documents
    from training.data.tokenizer import save_tokenizer, train_tokenizer

    folder = output_dir / f"tokenizer-records-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_tokenizer(records_documents(documents, 0, "train"), vocab_size), folder)
    return folder


def train_memory_model(args, objective: str, tokenizer_dir: Path) -> Path:
    """The same memory transformer and seed, trained with `objective` through `memory-models train`."""
    from configuration import build_model
    from training import train
    from eval.experiments.demo import memory_config
    from transformers import set_seed

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


def main(argv=None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if min(args.steps, args.hidden, args.layers, args.chunk_size, args.slots, args.limit) < 1:
        raise ValueError(f"sizes, steps and --limit must be positive, got {vars(args)}")
    from eval.harness import compare as evaluate

    start = time.perf_counter()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = records_tokenizer(output_dir, args.vocab_size, args.train_documents)
    finals = {objective: train_memory_model(args, objective, tokenizer_dir) for objective in ("clm", "combined")}
    eval_args = evaluate.build_parser().parse_args(
        ["--model", str(finals["clm"]), "--model", str(finals["combined"]), "--tasks", TASKS, "--no-memory",
         "--limit", str(args.limit), "--batch-size", "16", "--device", args.device,
         "--output-dir", str(output_dir / "eval")])
    summary = evaluate.run(eval_args)
    result = {"settings": vars(args), "models": {label: entry["metrics"] for label, entry in summary["models"].items()},
              "seconds": round(time.perf_counter() - start, 1)}
    (output_dir / "table4.json").write_text(json.dumps(result, indent=2))
    print(f"\n({result['seconds']:.0f} s) wrote {output_dir / 'table4.json'}")
    return result


if __name__ == "__main__":
    main()
