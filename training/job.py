"""`TrainJob`: one training run as a typed value, the Python API of `memory-models train`.

The command line parses into it (`TrainJob.from_argv`); `memory-models demo`, `memory-models reproduce` and a
user's Python build it directly, and `training.train.run(job)` runs it. What makes two runs the same run (what
`--resume` compares, `training.run_folder.run_identity`) is read from it.

    from memory_models.training.job import TrainJob
    from memory_models.training.train import run

    summary = run(TrainJob(output_dir="runs/mt", preset="memory-transformer-tiny", objective="combined",
                           max_steps=200, trainer_options={"warmup_steps": 10}))

Each field is the command-line option of the same name (`max_steps` is `--max-steps`) with the same default;
`trainer_options` are `transformers.TrainingArguments` fields (on the command line, any other `--key value`),
applied over the run's own settings (`training.train.training_arguments`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from memory_models.training.arguments import train_parser
from memory_models.training.objectives import get_objective

POSITIVE_FIELDS = ("max_steps", "batch_size", "eval_steps", "save_steps", "context", "eval_documents")
PATH_FIELDS = ("output_dir", "init_from", "encoder_from", "tokenizer")
TRAINER_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


@dataclass(frozen=True)
class TrainJob:
    """One `memory-models train` run (`memory-models train --help` describes each option).

    Model: `preset` or `init_from` (a checkpoint or Hub folder), `vocab_size`, `encoder_from` (copy an encoder),
    `freeze_encoder`, `no_memory`, `allow_missing_weights`, `trust_remote_code`.
    Data: `objective` (a registered one: `training.objectives`), `dataset`, `text_column`, `tokenizer`, `context`,
    `pack`, `train_documents`, `eval_documents`.
    Run: `output_dir`, `max_steps`, `batch_size`, `learning_rate` (default: the paper's for the model),
    `eval_steps` (default `max_steps / 5`), `save_steps` (default: `eval_steps`), `seed`, `bf16`, `resume`,
    `overwrite`, `push_to_hub` (`ORG/NAME`).
    LoRA: `lora_r` (enables it), `lora_alpha`, `lora_dropout`, `lora_target_modules`.
    `trainer_options`: `TrainingArguments` fields over the run's settings, e.g. `{"warmup_steps": 10}`.

    Invalid values are `ValueError`s naming the option, as on the command line.
    """

    output_dir: str
    preset: str | None = None
    init_from: str | None = None
    vocab_size: int | None = None
    encoder_from: str | None = None
    freeze_encoder: bool = False
    no_memory: bool = False
    allow_missing_weights: bool = False
    trust_remote_code: bool = False
    objective: str = "clm"
    dataset: str = "python-docs"
    text_column: str = "text"
    tokenizer: str | None = None
    context: int | None = None
    pack: bool = False
    train_documents: int | None = None
    eval_documents: int = 200
    max_steps: int = 1000
    batch_size: int = 8
    learning_rate: float | None = None
    eval_steps: int | None = None
    save_steps: int | None = None
    seed: int = 0
    bf16: bool = False
    resume: bool = False
    overwrite: bool = False
    push_to_hub: str | None = None
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] | None = None
    trainer_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in PATH_FIELDS:  # paths are recorded (run.json, metrics.json) as strings
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        object.__setattr__(self, "trainer_options", dict(self.trainer_options))
        self._check()

    def _check(self) -> None:
        if self.preset is None and self.init_from is None:
            raise ValueError("Pass --preset NAME or --init-from DIR.")
        if self.preset is not None and self.init_from is not None:
            raise ValueError("Pass --preset NAME or --init-from DIR, not both.")
        if self.freeze_encoder and self.encoder_from is None and self.init_from is None:
            raise ValueError("--freeze-encoder needs --encoder-from DIR (or --init-from a model with an encoder).")
        for name in POSITIVE_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
        get_objective(self.objective)  # an unknown one is refused with the registered ones
        unknown = sorted(set(self.trainer_options) - TRAINER_FIELDS)
        if unknown:
            raise ValueError(f"trainer_options {unknown} are not transformers TrainingArguments fields.")

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> TrainJob:
        """The job of a `memory-models train` command line: our options, and any other `--key value` as a
        `TrainingArguments` option (`--warmup_steps 10 --report_to tensorboard`)."""
        namespace, extras = train_parser().parse_known_args(argv)
        return cls(**vars(namespace), trainer_options=parse_trainer_options(extras))


def _option_error(message: str):
    raise ValueError(f"{message} (a TrainingArguments option)")


def parse_trainer_options(argv: Sequence[str]) -> dict[str, Any]:
    """The `TrainingArguments` options given on a command line, typed as `HfArgumentParser` types them (only those
    given: the run's own settings stay under the others). Anything else is a `ValueError` naming it."""
    parser = HfArgumentParser(TrainingArguments)
    parser.error = _option_error  # one line naming the option, not argparse's usage of every TrainingArguments field
    for action in parser._actions:  # an option not given stays out of the namespace
        action.default = argparse.SUPPRESS
    options, unknown = parser.parse_known_args(list(argv))
    if unknown:
        raise ValueError(f"unknown options {' '.join(unknown)}: neither memory-models train's nor transformers "
                         "TrainingArguments'.")
    return vars(options)
