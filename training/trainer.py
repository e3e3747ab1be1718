"""The Hugging Face `Trainer` specialised for the memory models: atomic checkpoints, per-objective
evaluation with streaming metrics and the entropy ratio, and resumption from the newest complete checkpoint.

* **Atomic checkpoints.** `MemoryTrainer` writes every checkpoint into `<output_dir>/.staging/checkpoint-N`,
  marks it complete (a `COMPLETE` file written last) and only then renames it to `<output_dir>/checkpoint-N`.
  A save that fails half-way therefore never produces a `checkpoint-N` folder, and [`last_complete_checkpoint`]
  ignores any `checkpoint-N` without the marker (e.g. one written by another tool).
* **Evaluation.** The eval datasets carry an `objective` column; [`RoutingCollator`] builds each eval batch
  with that objective (e.g. `clm` and `copy` for a memory model trained with `combined`). Metrics stream
  (`batch_eval_metrics`), and the entropy ratio `H_r = 1 - CE / ln(V)` (spec §6.1) is added to each loss.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import Trainer

from eval.metrics import StreamingMetrics, entropy_ratio
from training.objectives import ObjectiveCollator

STAGING_DIR = ".staging"
COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(output_dir) -> str | None:
    """The newest `checkpoint-N` folder of `output_dir` holding `trainer_state.json` and the `COMPLETE` marker."""
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        folder = os.path.join(output_dir, name)
        complete = os.path.isfile(os.path.join(folder, COMPLETE_MARKER))
        if match and complete and os.path.isfile(os.path.join(folder, "trainer_state.json")):
            steps.append((int(match.group(1)), folder))
    return max(steps)[1] if steps else None


def forward_arguments(model) -> set[str]:
    """The named arguments of `model.forward` (a `**kwargs` catch-all does not count: `LlamaForCausalLM`
    would forward an unknown `stream_ids` to its attention layers)."""
    parameters = inspect.signature(model.forward).parameters.values()
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD}


@dataclass
class RoutingCollator:
    """Collate with the objective named by the rows' `objective` column, else with the training objective.

    Args:
        collators (`dict[str, ObjectiveCollator]`): one collator per objective; must include `default`.
        default (`str`): the training objective (rows without an `objective` column).
        keep (`set[str]`, *optional*): batch keys the model's forward accepts (others, such as `stream_ids`
            for a plain `LlamaForCausalLM`, are dropped); `None` keeps everything.
    """

    collators: Mapping[str, ObjectiveCollator]
    default: str
    keep: set[str] | None = field(default=None)

    def __post_init__(self):
        if self.default not in self.collators:
            raise ValueError(f"default objective {self.default!r} has no collator; have {sorted(self.collators)}.")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict:
        """Build the batch of `features` with the objective of their first row."""
        objective = features[0].get("objective") or self.default
        if objective not in self.collators:
            raise ValueError(f"eval rows ask for objective {objective!r}; have {sorted(self.collators)}.")
        batch = self.collators[objective](features)
        return {k: v for k, v in batch.items() if self.keep is None or k in self.keep}


class MemoryTrainer(Trainer):
    """`Trainer` with atomic checkpoints and the entropy ratio in every evaluation.

    Args:
        vocab_size (`int`): vocabulary size, the `V` of `H_r = 1 - CE / ln(V)`.
        metric_functions (`dict[str, tuple]`, *optional*): eval-dataset name -> `(compute_metrics,
            preprocess_logits_for_metrics)`, so that e.g. an autoencoder uses unshifted accuracy.
        *args, **kwargs: passed to `transformers.Trainer`.
    """

    def __init__(self, *args, vocab_size: int, metric_functions: Mapping[str, tuple] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.vocab_size = vocab_size
        self.metric_functions = dict(metric_functions or {})
        self._staging = False

    # ------------------------------------------------------------------ evaluation
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """Select this dataset's metric functions, run the loop, add `<prefix>_entropy_ratio`."""
        name = metric_key_prefix.split("_", 1)[-1]
        saved = self.compute_metrics, self.preprocess_logits_for_metrics
        if name in self.metric_functions:
            self.compute_metrics, self.preprocess_logits_for_metrics = self.metric_functions[name]
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
        finally:
            self.compute_metrics, self.preprocess_logits_for_metrics = saved
        loss = output.metrics.get(f"{metric_key_prefix}_loss")
        if loss is not None:
            output.metrics[f"{metric_key_prefix}_entropy_ratio"] = float(entropy_ratio(loss, self.vocab_size))
        return output

    # ------------------------------------------------------------------ atomic checkpoints
    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        """Save into `.staging/checkpoint-N` on every rank, then (main process) mark complete and rename."""
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        staged = os.path.join(run_dir, STAGING_DIR, name)
        if self.args.should_save and os.path.exists(staged):
            shutil.rmtree(staged)  # a leftover of an earlier, failed save
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            publish_checkpoint(staged, os.path.join(run_dir, name))
            try:
                os.rmdir(os.path.dirname(staged))  # only when empty
            except OSError:
                pass
            self._rotate(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate(self, run_dir: str) -> None:
        """Keep the newest `save_total_limit` complete checkpoints (the Trainer's own rotation saw staging)."""
        limit = self.args.save_total_limit
        if not limit:
            return
        complete = sorted(
            (int(m.group(1)), n) for n in os.listdir(run_dir) if (m := CHECKPOINT_PATTERN.match(n))
        )
        for _, old in complete[:-limit]:
            shutil.rmtree(os.path.join(run_dir, old), ignore_errors=True)


def publish_checkpoint(staged: str, final: str) -> None:
    """Write the `COMPLETE` marker into `staged` and rename it to `final` (replacing an older `final`)."""
    with open(os.path.join(staged, COMPLETE_MARKER), "w", encoding="utf-8") as handle:
        handle.write("complete\n")
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(staged, final)


class StreamingAccuracy:
    """Trainer `compute_metrics` for `batch_eval_metrics=True`: accumulates token accuracy batch by batch
    (`eval.metrics.StreamingMetrics`) and reports `{"accuracy": ...}` on the last batch, then resets.

    Args:
        shift (`bool`): causal (shifted) or autoencoder (unshifted) targets.
        exclude_chunk_boundaries (`int`, *optional*): chunk size whose boundary targets are not scored.
    """

    def __init__(self, shift: bool, exclude_chunk_boundaries: int | None = None):
        self.metrics = StreamingMetrics(shift=shift, exclude_chunk_boundaries=exclude_chunk_boundaries)

    def __call__(self, eval_prediction, compute_result: bool = False) -> dict:
        """Add one batch of predicted ids; on the last batch return the accuracy and reset."""
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        self.metrics.update(predictions, eval_prediction.label_ids)
        if not compute_result:
            return {}
        result = self.metrics.compute()
        self.metrics.reset()
        return {"accuracy": result["accuracy"]}
