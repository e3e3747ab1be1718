"""`memory-models demo`: the main job, on one CPU in a few minutes, fully offline.

1. train a byte-level BPE tokenizer (2048 tokens) on the embedded `python-docs` corpus;
2. train a small memory transformer (encoder and decoder Llama, 8-token chunks x 4 memory slots) with the
   combined objective (causal + copy, paper Eq. 5), and the no-memory control for the same steps;
3. report CLM accuracy, `H_r` and copy accuracy of both (copy accuracy on full-length held-out rows);
4. save a Hub-ready checkpoint, reload it with `AutoModelForCausalLM.from_pretrained(dir,
   trust_remote_code=True)` in a fresh interpreter where this repository's packages cannot be imported
   (what a Hub user has), and generate from a prompt.

    memory-models demo                      # ~3 minutes on 2 idle CPU cores
    memory-models demo --steps 1000 --hidden 128 --output-dir runs/demo
    memory-models demo --quick              # seconds: the smoke test
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from transformers import set_seed

from memory_models.configuration import build_model
from memory_models.configuration.presets import llama
from memory_models.conversion.isolation import run_without_our_packages
from memory_models.eval.experiments.arguments import demo_parser
from memory_models.modeling_memory import MemoryConfig
from memory_models.training import train
from memory_models.training.data.tokenizer import corpus_texts, save_tokenizer, special_token_ids, train_tokenizer
from memory_models.training.job import TrainJob

# Runs where our packages cannot be imported (see conversion.isolation.run_without_our_packages).
LOADER = """
    import json
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, prompt, max_new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(json.dumps({"model_class": type(model).__name__, "model_module": type(model).__module__,
                      "completion": text}))
    """


def demo_tokenizer(output_dir: Path, vocab_size: int):
    """Train (or reuse) the demo's BPE tokenizer on the python-docs train split; returns its folder."""
    folder = output_dir / f"tokenizer-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_tokenizer(corpus_texts("python-docs", "text", None), vocab_size), folder)
    return folder


def memory_config(args, tokenizer, no_memory: bool):
    """A small memory transformer: Llama encoder and decoder of width `--hidden`, `--memory-slots` chunks of
    `--chunk-size` tokens."""
    ids = special_token_ids(tokenizer)
    base = {k: ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    heads = max(1, args.hidden // 32)
    encoder = llama(args.hidden, args.layers, heads, vocab_size=len(tokenizer), positions=args.chunk_size, **base)
    decoder = llama(args.hidden, args.layers, heads, vocab_size=len(tokenizer),
                    positions=args.chunk_size + args.memory_slots, **base)
    return MemoryConfig(encoder, decoder, chunk_size=args.chunk_size, num_memory_slots=args.memory_slots,
                        no_memory=no_memory, **ids)


def train_job(args, folder: Path, tokenizer_dir: Path) -> TrainJob:
    """The training job of each of the two models (the model itself is `memory_config`'s): the combined
    objective on packed python-docs rows, evaluated once at the end; the demo starts its runs over each time."""
    quick = dict(train_documents=64, eval_documents=12) if args.quick else {}
    return TrainJob(output_dir=str(folder), preset="memory-transformer-tiny", objective="combined", pack=True,
                    tokenizer=str(tokenizer_dir), max_steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                    learning_rate=1e-3, eval_steps=args.steps, save_steps=args.steps, overwrite=True, **quick,
                    trainer_options={"warmup_steps": max(1, args.steps // 20),
                                     "logging_steps": max(1, args.steps // 10)})


def train_pair(args, output_dir: Path, tokenizer_dir: Path) -> dict:
    """Train the memory model and the no-memory control for the same steps; returns their summaries."""
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    summaries = {}
    for name, no_memory in (("memory", False), ("no-memory control", True)):
        print(f"\n=== training the {name} model: combined objective, {args.steps} steps ===", flush=True)
        folder = output_dir / ("memory" if not no_memory else "control")
        set_seed(args.seed)
        model = build_model(memory_config(args, tokenizer, no_memory))
        summaries[name] = train.run(train_job(args, folder, tokenizer_dir), model=model)
    return summaries


def results_table(summaries: dict) -> str:
    """Markdown table: CLM accuracy / H_r and copy accuracy / H_r of each model."""
    lines = ["| model | CLM acc | CLM H_r | copy acc | copy H_r | steps | train s |", "|---|---|---|---|---|---|---|"]
    for name, summary in summaries.items():
        final = summary["final"]
        cells = [f"{100 * final.get(k, float('nan')):.2f}%" if k.endswith("accuracy") else
                 f"{final.get(k, float('nan')):.3f}" for k in
                 ("eval_clm_accuracy", "eval_clm_entropy_ratio", "eval_copy_accuracy", "eval_copy_entropy_ratio")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {summary['steps']} | {summary['train_seconds']:.0f} |")
    return "\n".join(lines)


def reload_and_generate(folder: Path, prompt: str, max_new_tokens: int) -> dict:
    """Load `folder` with trust_remote_code in a subprocess that cannot import our packages; generate greedily."""
    try:
        return run_without_our_packages(LOADER, folder.resolve(), prompt, max_new_tokens)
    except RuntimeError as error:
        raise RuntimeError(f"reloading {folder} without our packages failed: {error}") from None


def run(args) -> dict:
    """Run the demo; prints the comparison table and the generation, writes `demo.json`; returns its content."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.quick:
        args.steps, args.hidden, args.vocab_size, args.max_new_tokens = min(args.steps, 2), 32, 512, 8
    for name in ("steps", "hidden", "layers", "chunk_size", "memory_slots", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}.")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = demo_tokenizer(output_dir, args.vocab_size)
    summaries = train_pair(args, output_dir, tokenizer_dir)
    table = results_table(summaries)
    folder = output_dir / "memory" / "final"
    print(f"\n=== results after {args.steps} steps each (held-out python-docs) ===\n{table}")
    print(f"\n=== reloading {folder} with AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True) "
          f"in a fresh interpreter without this repository's packages ===", flush=True)
    generation = reload_and_generate(folder, args.prompt, args.max_new_tokens)
    print(f"loaded {generation['model_class']} from {generation['model_module']}")
    print(f"prompt:     {args.prompt!r}\ncompletion: {generation['completion']!r}")
    result = {"table": table, "summaries": {k: v["final"] for k, v in summaries.items()},
              "checkpoint": str(folder), "prompt": args.prompt, "generation": generation}
    (output_dir / "demo.json").write_text(json.dumps(result, indent=2))
    print(f"\nHub-ready checkpoint: {folder}   (push: memory-models export --model {folder} --output DIR "
          f"--push-to-hub org/name)")
    return result


def main(argv=None) -> int:
    """`memory-models demo`."""
    run(demo_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
