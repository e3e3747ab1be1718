"""The package's one training loop: `MemoryTrainer` (the Hugging Face Trainer's loop) with the same optimisation
everywhere, and `fit`, which runs that loop for code that builds its own model and rows.

`memory-models train` builds its `TrainingArguments` on [`loop_defaults`]; the information-retention probe
(`eval/information_retention.py`) and the oracle-memory diagnostic (`eval/experiments/readback.py`) train through
[`fit`]: the same AdamW, warmup and linear decay, gradient clipping and loss scaling, with no checkpoints, no
evaluation loop and no outputs (they evaluate themselves, e.g. from a callback).

    trainer = fit(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, steps=600, batch_size=32,
                  learning_rate=1e-3, warmup_steps=30, seed=0)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence

import torch
from transformers import TrainerCallback, TrainingArguments, default_data_collator
from transformers.trainer_callback import PrinterCallback

from memory_models.training.trainer import MemoryTrainer


def loop_defaults(*, steps: int, batch_size: int, learning_rate: float, warmup_steps: int, seed: int) -> dict:
    """The `TrainingArguments` every training loop of the package shares: the Trainer's AdamW without weight decay,
    `warmup_steps` of linear warmup, then linear decay to 0 at `steps`; gradients clipped at norm 1.0; the data
    order seeded with `seed`; every batch key reaches the model; no reporting integration."""
    return {
        "max_steps": steps, "per_device_train_batch_size": batch_size, "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate, "weight_decay": 0.0, "warmup_steps": warmup_steps,
        "lr_scheduler_type": "linear", "max_grad_norm": 1.0, "seed": seed, "data_seed": seed,
        "remove_unused_columns": False, "report_to": "none", "dataloader_num_workers": 0,
    }


class TensorRows(torch.utils.data.Dataset):
    """The rows of a dict of `[rows, ...]` tensors, each a dict of its slices (the default collator stacks them)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self.tensors = dict(tensors)
        sizes = {len(value) for value in self.tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"the row tensors have different numbers of rows: {sorted(sizes)}")
        (self.rows,) = sizes

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: int) -> dict:
        return {key: value[index] for key, value in self.tensors.items()}


class BatchStream(torch.utils.data.IterableDataset):
    """The rows of one `make_batch()` after another, endlessly: read `batch_size` rows at a time (as `fit` does),
    the loop trains on exactly the batches `make_batch` draws (fresh synthetic data every step)."""

    def __init__(self, make_batch: Callable[[], Mapping[str, torch.Tensor]]):
        self.make_batch = make_batch

    def __iter__(self):
        while True:
            batch = self.make_batch()
            yield from TensorRows(batch)


class LogLoss(TrainerCallback):
    """Each logged training loss as an INFO line, `step N / M: loss X`."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logger.info("step %d / %d: loss %.4f", state.global_step, state.max_steps, logs["loss"])


def fit(model, rows, *, steps: int, batch_size: int, learning_rate: float, warmup_steps: int, seed: int,
        use_cpu: bool | None = None, callbacks: Sequence[TrainerCallback] = (), logger: logging.Logger | None = None,
        log_every: int = 100) -> MemoryTrainer:
    """Train `model` for `steps` optimizer steps of `batch_size` rows through `MemoryTrainer` ([`loop_defaults`]),
    with torch's default AdamW implementation, as these probes always used (the Trainer's default, fused AdamW, costs
    several times more per step on a CPU for small models: 20.7 vs 3.0 ms for 40 small tensors, torch 2.13).

    Args:
        model: a `PreTrainedModel` whose forward takes the rows' keys and returns a loss.
        rows: a dict of `[rows, ...]` tensors (reshuffled every epoch, as a training set), or a torch `Dataset` /
            `IterableDataset` of row dicts (e.g. a [`BatchStream`]).
        use_cpu: train on the CPU (default: on a GPU when there is one).
        callbacks: `TrainerCallback`s, e.g. one that evaluates every N steps (`on_step_end`).
        logger: where the training loss goes (INFO), every `log_every` steps.
    Returns:
        The trainer (its `state.log_history` holds the logged losses); `model` is trained in place.
    """
    dataset = TensorRows(rows) if isinstance(rows, Mapping) else rows
    options = loop_defaults(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                            warmup_steps=warmup_steps, seed=seed)
    with tempfile.TemporaryDirectory() as scratch:  # the Trainer needs a folder; nothing is saved in it
        arguments = TrainingArguments(**options, optim="adamw_torch", output_dir=scratch, eval_strategy="no",
                                      save_strategy="no", logging_steps=max(1, min(log_every, steps)),
                                      disable_tqdm=True,
                                      use_cpu=not torch.cuda.is_available() if use_cpu is None else use_cpu)
        trainer = MemoryTrainer(model=model, args=arguments, train_dataset=dataset, vocab_size=model.config.vocab_size,
                                data_collator=default_data_collator,
                                callbacks=[*callbacks, *([LogLoss(logger)] if logger else [])])
        trainer.remove_callback(PrinterCallback)  # the losses go to `logger`, not to stdout
        trainer.train()
    return trainer
