"""Does it learn what the paper says? A small-scale benchmark run on the embedded corpus (issue 5, item 7).

    memory-models paper-check --output-dir runs/paper-check          # ~8 min on 2 idle CPU cores
    memory-models paper-check --steps 5000 --hidden 256 --output-dir runs/paper-check-gpu   # on a GPU

(a) Table 1 ordering: an autoencoder keeps far more of its input than a causal LM. We train a transformer
    autoencoder and a causal transformer of the same size for the same steps, then measure each frozen
    encoder's retention with `eval.information_retention` (a fresh decoder reconstructs the input from the
    last-position embedding; held-out token accuracy). The autoencoder's own reconstruction accuracy is
    reported too.
(b) Table 3 ordering: a memory transformer trained with the combined objective copies far better than one
    trained causally for the same steps (copy accuracy on full-length held-out rows), while its CLM accuracy
    stays within a few points.

Writes `paper_check.json` and prints both tables.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from transformers import set_seed

from configuration import build_model
from configuration.presets import llama
from eval.experiments.arguments import paper_check_parser
from eval.experiments.demo import demo_tokenizer, memory_config
from eval.information_retention import measure_retention
from modeling_memory import MemoryAutoencoderConfig
from training import train
from training.train import load_tokenizer


def _train(args, name: str, objective: str, model, tokenizer_dir: Path, context: int) -> dict:
    """One `memory-models train` run of `model` (a custom-size config) with `objective`."""
    options = ["--preset", "memory-transformer-tiny", "--output-dir", str(Path(args.output_dir) / name),
               "--objective", objective, "--pack", "--tokenizer", str(tokenizer_dir), "--context", str(context),
               "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
               "--learning-rate", str(args.learning_rate), "--eval-steps", str(args.steps),
               "--save-steps", str(args.steps), "--warmup_steps", str(max(1, args.steps // 20)),
               "--logging_steps", str(max(1, args.steps // 10)), "--eval-documents", "100",
               "--overwrite"]  # each check starts its run over
    parsed, extras = train.parse_args(options)
    return train.run(parsed, extras, model=model)["final"]


def retention_part(args, tokenizer_dir: Path, tokenizer) -> dict:
    """(a) autoencoder vs causal LM: reconstruction accuracy and frozen-encoder retention."""
    block = llama(args.hidden, args.layers, max(1, args.hidden // 32), vocab_size=len(tokenizer),
                  positions=args.context)
    set_seed(args.seed)
    ae = build_model(MemoryAutoencoderConfig(block, block.to_dict(), max_position_embeddings=args.context))
    ae_final = _train(args, "autoencoder", "autoencode", ae, tokenizer_dir, args.context)
    set_seed(args.seed)
    clm_final = _train(args, "causal", "clm", build_model(block), tokenizer_dir, args.context)
    result = {"autoencoder_reconstruction": {"accuracy": ae_final["eval_autoencode_accuracy"],
                                             "entropy_ratio": ae_final["eval_autoencode_entropy_ratio"]},
              "causal_clm": {"accuracy": clm_final["eval_clm_accuracy"],
                             "entropy_ratio": clm_final["eval_clm_entropy_ratio"]}}
    for name in ("autoencoder", "causal"):
        probe = measure_retention(
            str(Path(args.output_dir) / name / "final"), str(tokenizer_dir), contexts=[args.context],
            train_steps=args.probe_steps, eval_documents=100, batch_size=args.batch_size, lr=args.learning_rate,
            decoder_layers=args.layers, decoder_hidden=args.hidden, decoder_heads=max(1, args.hidden // 32),
            seed=args.seed)[0]
        result[f"{name}_encoder_retention"] = {"accuracy": probe.accuracy, "entropy_ratio": probe.entropy_ratio}
    return result


def memory_part(args, tokenizer_dir: Path, tokenizer) -> dict:
    """(b) memory transformer: combined vs causal objective at equal steps, CLM and copy accuracy."""
    config_args = argparse.Namespace(hidden=args.hidden, layers=args.layers, chunk_size=args.chunk_size, slots=4)
    result = {}
    for objective in ("combined", "clm"):
        set_seed(args.seed)
        model = build_model(memory_config(config_args, tokenizer, no_memory=False))
        final = _train(args, f"memory-{objective}", objective, model, tokenizer_dir, 4 * args.chunk_size)
        result[objective] = {key: final[f"eval_{key}"] for key in
                             ("clm_accuracy", "clm_entropy_ratio", "copy_accuracy", "copy_entropy_ratio")}
    return result


def format_tables(results: dict) -> str:
    """Both parts as Markdown tables."""
    lines = []
    a, b = results.get("retention", {}), results.get("memory", {})
    if a:
        lines += ["(a) information retention (held-out token accuracy / H_r)", "| model | accuracy | H_r |",
                  "|---|---|---|"]
    for key in ("autoencoder_reconstruction", "autoencoder_encoder_retention", "causal_encoder_retention",
                "causal_clm") if a else ():
        lines.append(f"| {key} | {100 * a[key]['accuracy']:.2f}% | {a[key]['entropy_ratio']:.3f} |")
    if b:
        lines += ["", "(b) memory transformer, equal steps",
                  "| objective | CLM acc | CLM H_r | copy acc | copy H_r |", "|---|---|---|---|---|"]
    for objective, row in b.items():
        lines.append(f"| {objective} | {100 * row['clm_accuracy']:.2f}% | {row['clm_entropy_ratio']:.3f} | "
                     f"{100 * row['copy_accuracy']:.2f}% | {row['copy_entropy_ratio']:.3f} |")
    return "\n".join(lines)


def run(args) -> dict:
    """Run both parts, print the tables, write `paper_check.json`; returns its content."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if min(args.steps, args.probe_steps, args.hidden, args.layers, args.context, args.chunk_size) < 1:
        raise ValueError(f"sizes and steps must be positive, got {vars(args)}")
    start = time.perf_counter()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = demo_tokenizer(output_dir, args.vocab_size)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    results = {"settings": vars(args)}
    if args.part in ("a", "all"):
        results["retention"] = retention_part(args, tokenizer_dir, tokenizer)
    if args.part in ("b", "all"):
        results["memory"] = memory_part(args, tokenizer_dir, tokenizer)
    results["seconds"] = round(time.perf_counter() - start, 1)
    print("\n" + format_tables(results) + f"\n\n({results['seconds']:.0f} s)")
    (output_dir / "paper_check.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv=None) -> int:
    """`memory-models paper-check`."""
    run(paper_check_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
