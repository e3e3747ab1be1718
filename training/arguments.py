"""Command-line options of the training commands (`memory-models train`, `tokenizer`, `plot`).

Kept apart from the implementations and importing only the standard library, so that `memory-models X --help`
answers without loading torch. Each implementation module parses its own `argv` with these parsers; `train`'s
options become a `training.job.TrainJob`, whose fields hold their defaults (an option not given is left out here).
"""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import add_trust_remote_code, positive_int, refuse_renamed
from memory_models.training.objectives import objective_names


def train_parser() -> argparse.ArgumentParser:
    """The options of `memory-models train` (TrainingArguments pass through as extras); only the options given
    reach the namespace (`TrainJob` holds the defaults)."""
    parser = argparse.ArgumentParser(prog="memory-models train", allow_abbrev=False,
                                     argument_default=argparse.SUPPRESS,
                                     description="Train any preset with any objective on the Hugging Face Trainer.",
                                     epilog="Any other `--key value` is a transformers TrainingArguments option, "
                                            "e.g. --warmup_steps 10 --gradient_accumulation_steps 2.")
    model = parser.add_argument_group("model")
    source = model.add_mutually_exclusive_group()
    source.add_argument("--preset", help="preset name (`memory-models presets` lists them)")
    source.add_argument("--init-from", metavar="DIR", help="start from the weights of a checkpoint/Hub folder")
    model.add_argument("--vocab-size", type=int, help="default: len(tokenizer)")
    model.add_argument("--encoder-from", metavar="DIR", help="copy the encoder of an autoencoder/memory model")
    model.add_argument("--freeze-encoder", action="store_true", help="freeze the (copied) encoder")
    model.add_argument("--no-memory", action="store_true", help="the paper's no-memory control")
    model.add_argument("--allow-missing-weights", action="store_true", help="load --init-from / --encoder-from "
                       "checkpoints with missing or unused tensors (missing ones stay random)")
    add_trust_remote_code(model)
    data = parser.add_argument_group("data")
    data.add_argument("--objective", choices=objective_names(), help="what the model learns: one of the registered "
                      "objectives (training/objectives)")
    data.add_argument("--dataset", help="corpus name or local path (training.data.corpora)")
    data.add_argument("--text-column", help="the dataset's text column (default: text); a question-answer file's "
                      "`context` keeps its `question` and `answer` beside it, for --objective retrieval")
    data.add_argument("--tokenizer", metavar="DIR", help="default: the --init-from checkpoint's tokenizer, else the "
                      "python-docs BPE tokenizer (8192)")
    data.add_argument("--context", type=int, help="tokens per row; default: the model's context")
    data.add_argument("--pack", action="store_true", help="pack documents into full rows (default: truncate)")
    data.add_argument("--train-documents", type=int, help="use only the first N training documents")
    data.add_argument("--eval-documents", type=int,
                      help="held-out documents (and at most as many rows) to evaluate on")
    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", required=True)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--batch-size", type=int, help="per-device batch size")
    run.add_argument("--learning-rate", type=float,
                     help="default: the paper's (2e-4 transformers, 5e-4 mixers, 5e-5 pretrained-size decoders)")
    run.add_argument("--eval-steps", type=int, help="default: max_steps / 5")
    run.add_argument("--save-steps", type=int, help="default: the eval steps")
    run.add_argument("--seed", type=int)
    run.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    run.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    run.add_argument("--overwrite", action="store_true", help="replace another run's outputs in --output-dir "
                     "(or write into a non-empty folder memory-models did not create, or created as another kind)")
    run.add_argument("--push-to-hub", metavar="ORG/NAME", help="at the end, upload final/ to this Hub repo "
                     "(created if needed); the Trainer's --push_to_hub --hub_model_id ORG/NAME do the same")
    lora = parser.add_argument_group("LoRA: adapters on the decoder; final/ holds the merged model")
    lora.add_argument("--lora-r", type=int, help="LoRA rank (enables LoRA; paper's helper: 64)")
    lora.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank; paper's helper: 32)")
    lora.add_argument("--lora-dropout", type=float, help="LoRA dropout")
    lora.add_argument("--lora-target-modules", nargs="+", metavar="NAME",
                      help="module names to adapt (default: q/k/v/o_proj gate/up/down_proj of the decoder)")
    refuse_renamed(parser, "--vocab")
    return parser


def tokenizer_parser() -> argparse.ArgumentParser:
    """The options of `memory-models tokenizer`."""
    parser = argparse.ArgumentParser(prog="memory-models tokenizer",
                                     description="Train a byte-level BPE tokenizer with the paper's special ids.")
    parser.add_argument("--corpus", default="python-docs", help="corpus name or local path (training.data.corpora)")
    parser.add_argument("--vocab-size", type=positive_int, default=8192)
    refuse_renamed(parser, "--vocab")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output folder that "
                        "memory-models did not create, or created as another kind")
    parser.add_argument("--num-documents", type=positive_int, default=None, help="train on the first N documents only")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--num-reserved-tokens", type=int, default=8)
    return parser


def plot_parser() -> argparse.ArgumentParser:
    """The options of `memory-models plot`."""
    parser = argparse.ArgumentParser(prog="memory-models plot",
                                     description="PNG and SVG plots of training, retention and benchmark JSON files.")
    parser.add_argument("kind", choices=["training", "retention", "benchmark"])
    parser.add_argument("inputs", nargs="+", help="metrics.json / retention JSON (several: one line each) / "
                        "benchmark JSON")
    parser.add_argument("--output", required=True, help="output path without extension (.png and .svg are written)")
    return parser
