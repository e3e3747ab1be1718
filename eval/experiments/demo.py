"""`memory-models demo`: the main job, on one CPU in a few minutes, fully offline: memories that are read back.

1. train a byte-level BPE tokenizer (2048 tokens) on the embedded `python-docs` corpus;
2. a memory model learns blank copy (the paper's identity task): its encoder compresses each 8-token chunk into
   one vector, and its decoder sees those memories and only blanks, and must write the chunks back; the
   no-memory control trains the same steps;
3. report held-out blank-copy, copy and CLM accuracy of both, and print one held-out passage beside what each
   decoder writes from the memories alone;
4. save a Hub-ready checkpoint, reload it with `AutoModelForCausalLM.from_pretrained(dir,
   trust_remote_code=True)` in a fresh interpreter where this repository's packages cannot be imported
   (what a Hub user has), and let it write the held-out passage back with `generate` (its first half and the
   copy delimiter as the prompt).

    memory-models demo                      # ~5 minutes on 2 idle CPU cores
    memory-models demo --decoder llama      # the memory transformer's Llama decoder (learned positions)
    memory-models demo --quick              # seconds: the smoke test
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import set_seed

from memory_models.configuration import build_model
from memory_models.configuration.presets import llama, mixer
from memory_models.conversion.isolation import run_without_our_packages
from memory_models.eval.experiments.arguments import demo_parser
from memory_models.modeling_memory import IGNORE_INDEX, MemoryConfig
from memory_models.training import train
from memory_models.training.data.corpora import filter_full_length, load_corpus, tokenize_corpus
from memory_models.training.data.tokenizer import corpus_texts, save_tokenizer, special_token_ids, train_tokenizer
from memory_models.training.job import TrainJob
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.copy import copy_batch

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
MODELS = {"memory": False, "no-memory control": True}  # name -> no_memory


def demo_tokenizer(output_dir: Path, vocab_size: int):
    """Train (or reuse) the demo's BPE tokenizer on the python-docs train split; returns its folder."""
    folder = output_dir / f"tokenizer-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_tokenizer(corpus_texts("python-docs", "text", None), vocab_size), folder)
    return folder


def encoder_config(args, tokenizer):
    """The encoder: a masked mixer over one chunk whose kernel covers the chunk (at this size it learns to compress
    fastest; docs/reproduce.md, "Why blank copy was slow")."""
    ids = special_token_ids(tokenizer)
    return mixer(args.hidden, args.layers, args.chunk_size, kernel=args.chunk_size, vocab_size=len(tokenizer),
                 **{k: ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")})


def memory_config(args, tokenizer, no_memory: bool) -> MemoryConfig:
    """`--memory-slots` chunks of `--chunk-size` tokens, the mixer encoder, and a decoder: a
    masked mixer whose kernel covers slots and chunk (`--decoder mixer`), or a Llama with learned slot and chunk
    positions (`--decoder llama`, the memory transformer's)."""
    ids = special_token_ids(tokenizer)
    base = {k: ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    window = args.chunk_size + args.memory_slots
    if args.decoder == "llama":
        decoder = llama(args.hidden, args.layers, max(1, args.hidden // 32), vocab_size=len(tokenizer),
                        positions=window, **base)
        extra = dict(filler="ones", position_embedding="learned")
    else:
        decoder = mixer(args.hidden, args.layers, window, kernel=window, vocab_size=len(tokenizer), **base)
        extra = dict(filler="zeros")
    return MemoryConfig(encoder_config(args, tokenizer), decoder, chunk_size=args.chunk_size,
                        num_memory_slots=args.memory_slots, no_memory=no_memory, **extra, **ids)


def train_job(args, folder: Path, tokenizer_dir: Path) -> TrainJob:
    """The training job of each of the two models (the model itself is `memory_config`'s): blank copy on packed
    python-docs rows, evaluated once at the end on 100 held-out rows; the demo starts its runs over each time."""
    quick = dict(train_documents=64, eval_documents=12) if args.quick else {"eval_documents": 100}
    return TrainJob(output_dir=str(folder), preset="memory-transformer-tiny", objective="blank_copy", pack=True,
                    tokenizer=str(tokenizer_dir), max_steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                    learning_rate=args.learning_rate, eval_steps=args.steps, save_steps=args.steps, overwrite=True,
                    **quick, trainer_options={"warmup_steps": max(1, args.steps // 20),
                                              "logging_steps": max(1, args.steps // 10)})


def train_pair(args, output_dir: Path, tokenizer_dir: Path) -> dict:
    """The memory model and its no-memory control, blank copy for the same steps; returns their summaries."""
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    summaries = {}
    for name, no_memory in MODELS.items():
        print(f"\n=== the {name} model: blank copy, {args.steps} steps ===", flush=True)
        set_seed(args.seed)
        model = build_model(memory_config(args, tokenizer, no_memory))
        folder = output_dir / ("control" if no_memory else "memory")
        summaries[name] = train.run(train_job(args, folder, tokenizer_dir), model=model)
    return summaries


def results_table(summaries: dict) -> str:
    """Markdown table: held-out blank-copy, copy and CLM accuracy of the memory model and its control."""
    keys = ("eval_blank_copy_accuracy", "eval_copy_accuracy", "eval_clm_accuracy")
    lines = ["| model | blank-copy acc | copy acc | CLM acc | steps | train s |", "|---|---|---|---|---|---|"]
    for name in MODELS:
        final = summaries[name]["final"]
        cells = [f"{100 * final.get(key, float('nan')):.2f}%" for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {summaries[name]['steps']} | {summaries[name]['train_seconds']:.0f} |")
    return "\n".join(lines)


def held_out_passage(args, tokenizer) -> torch.LongTensor:
    """The first full-length held-out python-docs row of the demo's context (`chunk_size x memory_slots`)."""
    context = args.chunk_size * args.memory_slots
    rows = filter_full_length(tokenize_corpus(load_corpus("python-docs", "test", num_documents=50), tokenizer,
                                              context, mode="pack"))
    return torch.tensor(rows[0]["input_ids"][:context])


@torch.no_grad()
def read_back(folder: Path, passage: torch.LongTensor) -> tuple[list[int], list[int]]:
    """What a trained model writes under its blanks when `passage`'s first half is its only input (the paper's
    blank-copy layout): `(targets, greedy predictions)` at the copied positions."""
    model = train.load_pretrained(str(folder), None).eval()
    settings = replace(CopySettings.from_config(model.config), blank=True)
    batch = copy_batch(passage[None], settings=settings, pad_token_id=model.config.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    positions = (batch["labels"][0] != IGNORE_INDEX).nonzero().flatten()
    return batch["labels"][0, positions].tolist(), logits[0, positions - 1].argmax(-1).tolist()


def show_passage(output_dir: Path, tokenizer, passage: torch.LongTensor) -> dict:
    """Print a held-out passage beside what the memory model and the control write from the memories alone."""
    shown = {}
    for name in MODELS:
        folder = output_dir / ("control" if MODELS[name] else "memory") / "final"
        targets, predicted = read_back(folder, passage)
        shown[name] = {"text": tokenizer.decode(predicted),
                       "tokens_right": sum(t == p for t, p in zip(targets, predicted)), "tokens": len(targets)}
    shown["held-out passage"] = {"text": tokenizer.decode(targets)}
    width = max(len(name) for name in shown)
    print("\n=== a held-out passage, and what each decoder writes from its memories alone (it sees only blanks) ===")
    for name, item in reversed(list(shown.items())):
        right = f"   ({item['tokens_right']}/{item['tokens']} tokens)" if "tokens" in item else ""
        print(f"{name:>{width}}: {item['text']!r}{right}")
    return shown


def copy_prompt(tokenizer, passage: torch.LongTensor, config) -> tuple[str, int]:
    """The passage's first half and the copy delimiter, as text, and the number of tokens the copy then writes (the
    first half from its token `delimiter_length` on: the token after the last delimiter is predicted there)."""
    half = passage.shape[0] // 2
    delimiter = tokenizer.convert_ids_to_tokens(config.copy_delimiter_token_id) * config.copy_delimiter_length
    return tokenizer.decode(passage[:half]) + delimiter, half - config.copy_delimiter_length


def reload_and_generate(folder: Path, prompt: str, max_new_tokens: int) -> dict:
    """Load `folder` with trust_remote_code in a subprocess that cannot import our packages; generate greedily."""
    try:
        return run_without_our_packages(LOADER, folder.resolve(), prompt, max_new_tokens)
    except RuntimeError as error:
        raise RuntimeError(f"reloading {folder} without our packages failed: {error}") from None


def check_args(args) -> None:
    """Positive sizes, and a chunk count that leaves room for the copy delimiter."""
    for name in ("steps", "hidden", "layers", "chunk_size", "memory_slots", "batch_size", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}.")
    if args.memory_slots % 2 or args.chunk_size * args.memory_slots // 2 <= 3:
        raise ValueError(f"blank copy needs an even --memory-slots and a half window longer than the 3-token "
                         f"delimiter, got --memory-slots {args.memory_slots} --chunk-size {args.chunk_size}.")


def run(args) -> dict:
    """Run the demo; prints the comparison table, the read-back passage and the generation, writes `demo.json`."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.quick:
        args.steps, args.hidden, args.vocab_size, args.max_new_tokens = 2, 32, 512, args.max_new_tokens or 8
    check_args(args)
    start = time.perf_counter()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = demo_tokenizer(output_dir, args.vocab_size)
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    summaries = train_pair(args, output_dir, tokenizer_dir)
    table = results_table(summaries)
    print(f"\n=== held-out results ({args.decoder} decoder) ===\n{table}")
    passage = held_out_passage(args, tokenizer)
    shown = show_passage(output_dir, tokenizer, passage)
    folder = output_dir / "memory" / "final"
    prompt, copied = copy_prompt(tokenizer, passage, memory_config(args, tokenizer, False))
    prompt = prompt if args.prompt is None else args.prompt
    max_new_tokens = args.max_new_tokens or (copied if args.prompt is None else 24)
    print(f"\n=== reloading {folder} with AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True) "
          f"in a fresh interpreter without this repository's packages, and generating ===", flush=True)
    generation = reload_and_generate(folder, prompt, max_new_tokens)
    print(f"loaded {generation['model_class']} from {generation['model_module']}")
    print(f"prompt:     {prompt!r}\ncompletion: {generation['completion']!r}")
    seconds = round(time.perf_counter() - start, 1)
    result = {"table": table, "decoder": args.decoder, "summaries": {k: v["final"] for k, v in summaries.items()},
              "passage": shown, "checkpoint": str(folder), "prompt": prompt, "generation": generation,
              "seconds": seconds}
    (output_dir / "demo.json").write_text(json.dumps(result, indent=2))
    print(f"\nHub-ready checkpoint: {folder}   (push: memory-models export --model {folder} --output DIR "
          f"--push-to-hub org/name)\ndemo finished in {seconds:.0f} s")
    return result


def main(argv=None) -> int:
    """`memory-models demo`."""
    run(demo_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
