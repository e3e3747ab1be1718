"""`memory-models demo`: the main job, on 2 CPU cores in a few minutes, fully offline: memories that are read back.

1. train a byte-level BPE tokenizer (2048 tokens) on the embedded `python-docs` corpus;
2. an autoencoder learns to compress each 8-token chunk into one vector and write it back (the paper's
   high-fidelity encoder);
3. a memory model over that encoder, frozen, learns to write the chunks back from their memories: blank copy (the
   paper's identity task, Fig. 4(d): its decoder sees the memories and only blanks) mixed with copy (it also sees
   the copy it has written so far, as `generate` shows it; objective `copy_and_blank_copy`); the no-memory
   control trains the same steps, in a second process beside the autoencoder (`--jobs 2`, one thread each). The
   paper's own model by default, the memory transformer (Llama encoder and decoder, the decoder with learned slot
   and chunk positions); `--family memory-mixer` runs masked mixers;
4. report held-out blank-copy, copy and CLM accuracy of both, and print one held-out passage beside what each
   decoder writes from the memories alone;
5. save a Hub-ready checkpoint, reload it with `AutoModelForCausalLM.from_pretrained(dir,
   trust_remote_code=True)` in a fresh interpreter where this repository's packages cannot be imported
   (what a Hub user has), and let it write the held-out passage back with `generate` (its first half and the
   copy delimiter as the prompt).

    memory-models demo                          # ~4 minutes on 2 idle CPU cores: the memory transformer
    memory-models demo --family memory-mixer    # the masked-mixer memory model
    memory-models demo --quick                  # seconds: the smoke test
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import set_seed

from memory_models.configuration import build_model
from memory_models.configuration.presets import llama, mixer
from memory_models.conversion.isolation import run_without_our_packages
from memory_models.conversion.safe_io import all_ours, claim_folder, locked
from memory_models.eval.experiments.arguments import demo_parser
from memory_models.eval.experiments.reproduce_stages import available_cpus
from memory_models.eval.experiments.workers import output_to, worker_pool
from memory_models.modeling_memory import IGNORE_INDEX, MemoryAutoencoderConfig, MemoryConfig
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
MEMORY, CONTROL = "memory", "no-memory control"
MODELS = {MEMORY: "memory", CONTROL: "control"}  # name -> its run folder in --output-dir


def demo_tokenizer(output_dir: Path, vocab_size: int):
    """Train (or reuse) the demo's BPE tokenizer on the python-docs train split; returns its folder."""
    folder = output_dir / f"tokenizer-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        save_tokenizer(train_tokenizer(corpus_texts("python-docs", "text", None), vocab_size), folder)
    return folder


@dataclass(frozen=True)
class DemoRecipe:
    """A family's training budget: autoencoder steps, memory-model steps and learning rate (chosen by held-out curves
    on 2 CPU cores: docs/reproduce.md, "Why blank copy was slow", item 7)."""

    autoencoder_steps: int
    steps: int
    learning_rate: float


RECIPES = {"memory-transformer": DemoRecipe(autoencoder_steps=1500, steps=1000, learning_rate=2e-3),
           "memory-mixer": DemoRecipe(autoencoder_steps=1000, steps=1000, learning_rate=6e-3)}  # DEMO_FAMILIES


def with_recipe(args):
    """`args` with the family's budget wherever an option was not given (`--quick`: a few steps of a tiny model)."""
    recipe = RECIPES[args.family]
    if args.quick:
        recipe = DemoRecipe(autoencoder_steps=2, steps=2, learning_rate=recipe.learning_rate)
    return replace_args(args, autoencoder_steps=recipe.autoencoder_steps, steps=recipe.steps,
                        learning_rate=recipe.learning_rate)


def replace_args(args, **defaults):
    """A copy of the argparse namespace `args` with `defaults` for its options that are `None`."""
    values = vars(args).copy()
    values.update({name: value for name, value in defaults.items() if values.get(name) is None})
    return type(args)(**values)


def _special(tokenizer) -> dict:
    ids = special_token_ids(tokenizer)
    return {k: ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")}


def block_config(args, tokenizer, length: int):
    """One encoder or decoder of the family: a Llama with heads of 8 dimensions (16 at width 128, the autoencoder's
    of `small`), or a masked mixer whose kernel covers its `length` (the chunk, or slots and chunk)."""
    if args.family == "memory-transformer":
        return llama(args.hidden, args.layers, max(1, args.hidden // 8), vocab_size=len(tokenizer), positions=length,
                     **_special(tokenizer))
    return mixer(args.hidden, args.layers, length, kernel=length, vocab_size=len(tokenizer), **_special(tokenizer))


def autoencoder_config(args, tokenizer) -> MemoryAutoencoderConfig:
    """The chunk autoencoder: the family's encoder over one chunk, and an unrolled decoder of the same kind."""
    block = block_config(args, tokenizer, args.chunk_size)
    return MemoryAutoencoderConfig(block, block.to_dict(), max_position_embeddings=args.chunk_size,
                                   expansion="unroll", **special_token_ids(tokenizer))


def memory_config(args, tokenizer, no_memory: bool) -> MemoryConfig:
    """`--memory-slots` chunks of `--chunk-size` tokens, the autoencoder's encoder and a decoder over the slots and
    the chunk: a Llama with learned slot and chunk positions (the memory transformer's) or a masked mixer whose
    kernel covers the window."""
    window = args.chunk_size + args.memory_slots
    transformer = args.family == "memory-transformer"
    extra = dict(filler="ones", position_embedding="learned") if transformer else dict(filler="zeros")
    return MemoryConfig(block_config(args, tokenizer, args.chunk_size), block_config(args, tokenizer, window),
                        chunk_size=args.chunk_size, num_memory_slots=args.memory_slots, no_memory=no_memory,
                        **extra, **special_token_ids(tokenizer))


def train_job(args, folder: Path, tokenizer_dir: Path, objective: str = "copy_and_blank_copy", **model) -> TrainJob:
    """The training job of each model (the model itself is built by `autoencoder_config` / `memory_config`): packed
    python-docs rows, batch `--batch-size`, evaluated 5 times on 100 held-out rows (the curves of its picture); the
    demo starts its runs over each time. `model`: `encoder_from` and `freeze_encoder` of the memory model."""
    steps = args.autoencoder_steps if objective == "autoencode" else args.steps
    quick = dict(train_documents=64, eval_documents=12) if args.quick else {"eval_documents": 100}
    context = {"context": args.chunk_size} if objective == "autoencode" else {}
    return TrainJob(output_dir=str(folder), preset="memory-transformer-tiny", objective=objective, pack=True,
                    tokenizer=str(tokenizer_dir), max_steps=steps, batch_size=args.batch_size, seed=args.seed,
                    learning_rate=args.learning_rate, eval_steps=max(1, steps // 5), save_steps=steps, overwrite=True,
                    **context, **model, **quick,
                    trainer_options={"warmup_steps": max(1, steps // 10), "logging_steps": max(1, steps // 10)})


def train_memory_model(args, output_dir: Path, tokenizer_dir: Path, name: str) -> dict:
    """Model `name` of `MODELS`, blank copy and copy for `--steps`: the memory model over the autoencoder's frozen
    encoder, or the control (no encoder); returns its summary."""
    print(f"\n=== the {name} model: blank copy and copy, {args.steps} steps ===", flush=True)
    set_seed(args.seed)
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    no_memory = name == CONTROL
    encoder = {} if no_memory else dict(encoder_from=str(output_dir / "autoencoder" / "final"), freeze_encoder=True)
    job = train_job(args, output_dir / MODELS[name], tokenizer_dir, **encoder)
    return train.run(job, model=build_model(memory_config(args, tokenizer, no_memory)))


def _train_control_alone(args, output_dir: Path, tokenizer_dir: Path, log: Path) -> dict:
    """The control in a process of its own on one thread, everything it prints going to `log`."""
    with output_to(log, "w"):
        torch.set_num_threads(1)
        return train_memory_model(args, output_dir, tokenizer_dir, CONTROL)


def train_models(args, output_dir: Path, tokenizer_dir: Path) -> tuple[dict, dict]:
    """The autoencoder, then the memory model over its frozen encoder; the no-memory control (which needs no
    encoder) trains the same steps in a second process beside the autoencoder, one thread each, when `--jobs` is 2.
    Returns the autoencoder's summary and the two models'."""
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    threads = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        control = None
        if args.jobs == 2:
            pool = stack.enter_context(worker_pool(1))
            log = output_dir / "control.log"
            control = pool.submit(_train_control_alone, args, output_dir, tokenizer_dir, log)
            print(f"\n=== the no-memory control trains beside the autoencoder, one thread each (its log: {log}) ===")
            torch.set_num_threads(1)
        print(f"\n=== the autoencoder ({args.family}): {args.autoencoder_steps} steps ===", flush=True)
        set_seed(args.seed)
        try:
            autoencoder = train.run(train_job(args, output_dir / "autoencoder", tokenizer_dir, "autoencode"),
                                    model=build_model(autoencoder_config(args, tokenizer)))
        finally:
            torch.set_num_threads(threads)
        summaries = {MEMORY: train_memory_model(args, output_dir, tokenizer_dir, MEMORY)}
        summaries[CONTROL] = (control.result() if control is not None else
                              train_memory_model(args, output_dir, tokenizer_dir, CONTROL))
    if control is not None:
        print(f"(the no-memory control trained beside it: {summaries[CONTROL]['steps']} steps in "
              f"{summaries[CONTROL]['train_seconds']:.0f} s, log in {output_dir / 'control.log'})")
    return autoencoder, summaries


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
        folder = output_dir / MODELS[name] / "final"
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
    for name in ("autoencoder_steps", "steps", "hidden", "layers", "chunk_size", "memory_slots", "batch_size",
                 "max_new_tokens"):
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
        args.hidden, args.vocab_size, args.max_new_tokens = 32, 512, args.max_new_tokens or 8
    args = with_recipe(replace_args(args, jobs=2 if available_cpus() >= 2 else 1))
    check_args(args)
    # new, empty or a demo folder (ours: a rerun trains again in it); one of a version before the marker holds our
    # run folders
    output_dir = claim_folder(args.output_dir, kind="demo", earlier=lambda folder: all_ours(
        folder / name for name in ("autoencoder", *MODELS.values()) if (folder / name).exists()))
    with locked(output_dir):
        return _run(args, output_dir)


def _run(args, output_dir: Path) -> dict:
    start = time.perf_counter()
    tokenizer_dir = demo_tokenizer(output_dir, args.vocab_size)
    tokenizer = train.load_tokenizer(str(tokenizer_dir))
    autoencoder, summaries = train_models(args, output_dir, tokenizer_dir)
    reconstruction = autoencoder["final"].get("eval_autoencode_accuracy", float("nan"))
    table = results_table(summaries)
    print(f"\n=== held-out results ({args.family}) ===\nthe autoencoder writes back {100 * reconstruction:.2f}% of the "
          f"tokens of held-out chunks; over its frozen encoder:\n{table}")
    passage = held_out_passage(args, tokenizer)
    shown = show_passage(output_dir, tokenizer, passage)
    folder = output_dir / MODELS[MEMORY] / "final"
    prompt, copied = copy_prompt(tokenizer, passage, memory_config(args, tokenizer, False))
    prompt = prompt if args.prompt is None else args.prompt
    max_new_tokens = args.max_new_tokens or (copied if args.prompt is None else 24)
    print(f"\n=== reloading {folder} with AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True) "
          f"in a fresh interpreter without this repository's packages, and generating ===", flush=True)
    generation = reload_and_generate(folder, prompt, max_new_tokens)
    print(f"loaded {generation['model_class']} from {generation['model_module']}")
    print(f"prompt:     {prompt!r}\ncompletion: {generation['completion']!r}")
    seconds = round(time.perf_counter() - start, 1)
    result = {"table": table, "family": args.family, "autoencoder": autoencoder["final"],
              "summaries": {k: v["final"] for k, v in summaries.items()}, "passage": shown,
              "checkpoint": str(folder), "prompt": prompt, "generation": generation, "seconds": seconds,
              "settings": {name: getattr(args, name) for name in ("autoencoder_steps", "steps", "learning_rate",
                                                                  "batch_size", "hidden", "layers", "chunk_size",
                                                                  "memory_slots", "seed", "jobs")}}
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
