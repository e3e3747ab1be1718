"""The `memory-models` command: one entry point, one sub-command per job.

    memory-models demo                      # the main job on the embedded default corpus
    memory-models train --preset ... --objective combined ...
    memory-models tokenizer --corpus python-docs --vocab-size 8192 --output tok/
    memory-models retention --encoder PATH_OR_HUB_ID --context 16 64 ...
    memory-models export --model DIR --output hub/name [--push-to-hub org/name]
    memory-models convert --decoder unsloth/Llama-3.2-1B --output runs/llama-memory
    memory-models eval --model DIR [--model DIR2 ...] --tasks mmlu,longbench,swde [--no-memory] [--limit N]
    memory-models benchmark memory [--quick]
    memory-models plot training runs/mt/metrics.json --output docs/training
    memory-models presets
"""

import importlib
import os
import sys

# sub-command -> (module, description). Each module has `main(argv=None)`.
COMMANDS = {
    "demo": ("eval.experiments.demo", "train a tiny memory model on the embedded corpus, export, reload, generate"),
    "train": ("training.train", "train any preset with any objective on the HF Trainer"),
    "tokenizer": ("training.data.tokenizer", "train a byte-level BPE tokenizer on a corpus"),
    "retention": ("eval.information_retention", "measure how much of its input a model's embedding retains"),
    "export": ("conversion.export_to_hub", "write a Hub-ready folder (and optionally push it)"),
    "convert": ("conversion.pretrained_decoder", "make a pretrained causal LM (Llama 3.2, Qwen, ...) a memory model's decoder"),
    "eval": ("eval.harness.compare", "lm-eval tasks (mmlu, longbench, swde, ...) on saved models, side by side"),
    "benchmark": ("eval.benchmarks.cli", "speed and memory benchmarks (table + JSON)"),
    "plot": ("training.plot", "PNG/SVG plots of training, retention and benchmark JSON (matplotlib)"),
    "encode": ("eval.banks.encode", "encode a corpus into a memory bank (one process, or many under torchrun)"),
    "verify": ("eval.banks.bank", "check every shard of a memory bank against its SHA-256"),
    "generate": ("eval.banks.generate", "continue a prompt, optionally from a document in a memory bank"),
    "bank-retention": ("eval.banks.read_back", "how much of its text a memory bank can read back (blank copy)"),
    "presets": (None, "list the named model configurations"),
}


def _usage() -> str:
    lines = ["usage: memory-models COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in COMMANDS.items()]
    return "\n".join(lines + ["", "`memory-models COMMAND --help` describes each command's options."])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"memory-models: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    module_name = COMMANDS[command][0]
    if module_name is None:
        from configuration import get_preset, list_presets

        for name in list_presets():
            config = get_preset(name)
            print(f"{name:<34} {config.model_type:<20} context {config.max_position_embeddings}")
        return 0
    sys.argv = [f"memory-models {command}"] + rest
    result = importlib.import_module(module_name).main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
