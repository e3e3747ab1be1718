"""The Hugging Face `Trainer` specialised for the memory models: atomic checkpoints, per-objective
evaluation with streaming metrics and the entropy ratio, and resumption from the newest complete checkpoint.

* **Atomic checkpoints.** `MemoryTrainer` writes every checkpoint into `<output_dir>/.staging/checkpoint-N`,
  gives its files the modes of the umask, marks it complete (a `COMPLETE` file written last) and only then renames
  it to `<output_dir>/checkpoint-N`.
  A save that fails half-way therefore never produces a `checkpoint-N` folder, and [`last_complete_checkpoint`]
  ignores any `checkpoint-N` without the marker (e.g. one written by another tool).
* **Evaluation.** The eval datasets carry an `objective` column; [`RoutingCollator`] builds each eval batch
  with that objective (`clm`, `copy` and `blank_copy` for a memory model, whatever it trains with). Metrics stream
  (`batch_eval_metrics`), and the entropy ratio `H_r = 1 - CE / ln(V)` (paper Eq. 2) is added to each loss.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainerState

from memory_models.conversion import loading, safe_io
from memory_models.conversion.adapters import is_peft_model, load_extras, save_extras
from memory_models.modeling_memory import LOSS_STREAMS
from memory_models.training.metrics import StreamingMetrics, entropy_ratio
from memory_models.training.objectives.batch import ObjectiveCollator

STAGING_DIR = ".staging"
COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STREAM_LOSS_NAMES = tuple(f"loss_{name}" for name in LOSS_STREAMS)  # logged parts of a multi-stream loss


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


def checkpoint_step(checkpoint) -> int:
    """The global step of a complete checkpoint (its `trainer_state.json`)."""
    with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as handle:
        return int(json.load(handle)["global_step"])


def _base_model(model):
    """The model under a PEFT wrapper (or `model` itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def forward_arguments(model) -> set[str]:
    """The named arguments of `model.forward` (a `**kwargs` catch-all does not count: `LlamaForCausalLM`
    would forward an unknown `stream_ids` to its attention layers)."""
    if hasattr(model, "get_base_model"):  # a PeftModel passes every keyword on to the model it wraps
        model = model.get_base_model()
    parameters = inspect.signature(model.forward).parameters.values()
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD}


@dataclass
class RoutingCollator:
    """Collate each row with the objective named by its `objective` column, else with the training objective.

    Rows of one objective form one sub-batch built by its collator; the sub-batches (a mixture's parts, such as
    `combined_retrieval`'s) are stacked in order of first appearance, so they must have one length (the run's
    collators pad to its context).

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
        """Build the batch of `features`, each row with its objective."""
        groups: dict[str, list] = {}
        for feature in features:
            groups.setdefault(feature.get("objective") or self.default, []).append(feature)
        unknown = sorted(set(groups) - set(self.collators))
        if unknown:
            raise ValueError(f"rows ask for objective(s) {unknown}; have {sorted(self.collators)}.")
        batches = [self.collators[name](rows) for name, rows in groups.items()]
        if len(batches) > 1:
            shapes = {tuple(b["input_ids"].shape[1:]) for b in batches}
            if len(shapes) > 1 or len({tuple(b) for b in batches}) > 1:
                raise ValueError(f"the objectives {list(groups)} built batches that cannot be stacked (lengths "
                                 f"{sorted(shapes)}): give their collators one max_length")
        batch = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
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
        if self.args.label_names is None and "labels" in forward_arguments(self.model):
            self.label_names = ["labels"]  # a PeftModel's own forward(*args, **kwargs) names no labels
        self.vocab_size = vocab_size
        self.metric_functions = dict(metric_functions or {})
        self._staging = False
        self._stream_losses = None  # per-stream loss parts accumulated since the last log (combined objective)
        self._stream_logged_step = None

    # ------------------------------------------------------------------ loss scaling and per-stream logs
    def _get_num_items_in_batch(self, batch_samples, device):
        """The step's target counts: per loss group (summed over micro-batches, gathered over processes) for a
        model with `loss_target_counts` (the memory model's streams and chunks), else the Trainer's count."""
        counter = getattr(_base_model(self.accelerator.unwrap_model(self.model)), "loss_target_counts", None)
        if counter is None or not self.model_accepts_loss_kwargs or not batch_samples or "labels" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        counts = sum(counter(b["labels"], b.get("attention_mask"), b.get("stream_ids"), b.get("shift_labels")).cpu()
                     for b in batch_samples)
        counts = counts.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.gather(counts[None]).sum(0)
        return counts

    def _loss_scale(self, num_items_in_batch) -> float:
        """The factor `Trainer.compute_loss` applies to a loss normalised by a count over all processes."""
        if (self.args.average_tokens_across_devices and (self.model_accepts_loss_kwargs or self.compute_loss_func)
                and num_items_in_batch is not None):
            return self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
        return 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The Trainer's loss; with `stream_losses` (combined objective) also accumulate each stream's part for
        the `loss_clm` / `loss_copy` logs, and evaluate the unweighted per-stream loss (eval sets hold one stream)."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        streams = outputs.get("stream_losses") if isinstance(outputs, Mapping) else None
        if streams is not None:
            scale = self._loss_scale(num_items_in_batch)
            if not model.training:
                loss = streams.sum() * scale
            else:
                scaled_for_ga = self.loss_is_scaled_for_ga
                if scaled_for_ga is None:
                    scaled_for_ga = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or \
                        self.compute_loss_func is not None
                if not scaled_for_ga:
                    scale = scale / self.current_gradient_accumulation_steps
                present = torch.bincount(inputs["stream_ids"].long().flatten(), minlength=len(LOSS_STREAMS)).cpu() > 0
                parts = torch.stack([streams.detach().float() * scale, present.to(streams.device).float()])
                if self._stream_losses is None:
                    self._stream_losses = torch.zeros_like(parts)
                    if self._stream_logged_step is None:
                        self._stream_logged_step = self.state.global_step
                self._stream_losses[0] += parts[0]
                self._stream_losses[1] = torch.maximum(self._stream_losses[1], parts[1])
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        """Add `loss_clm` / `loss_copy` (the mean unweighted stream losses since the last log, over all processes)
        next to the Trainer's `loss`, which is `clm_loss_weight * loss_clm + copy_loss_weight * loss_copy`."""
        if "loss" in logs and self._stream_losses is not None:
            steps = max(1, self.state.global_step - self._stream_logged_step)
            gathered = self.accelerator.gather(self._stream_losses[None]).view(-1, *self._stream_losses.shape)
            mean, present = gathered[:, 0].mean(0) / steps, gathered[:, 1].amax(0) > 0
            for name, value, seen in zip(STREAM_LOSS_NAMES, mean.tolist(), present.tolist()):
                if seen:
                    logs[name] = round(value, 4)
            self._stream_losses = None
            self._stream_logged_step = self.state.global_step
        super().log(logs, *args, **kwargs)

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

    # ------------------------------------------------------------------ LoRA extras
    def _save(self, output_dir=None, state_dict=None):
        """Also write the trainable parameters a PEFT adapter does not hold (a learned filler)."""
        super()._save(output_dir, state_dict)
        if is_peft_model(self.model):
            save_extras(self.model, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Load a checkpoint to resume from, refusing (naming it) a truncated or corrupt weights file and NaN or inf
        in the weights it holds: a run never trains on from a broken state and reports success."""
        loading.weight_files(resume_from_checkpoint, option="--resume")
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if is_peft_model(model or self.model):
            load_extras(model or self.model, resume_from_checkpoint)
        loading.check_finite(model or self.model, resume_from_checkpoint, option="--resume")

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
        self._fix_best_checkpoint(run_dir, staged)
        if self.args.should_save:
            identity = os.path.join(run_dir, "run.json")  # the run's identity travels with the checkpoint
            if os.path.isfile(identity):
                shutil.copyfile(identity, os.path.join(staged, "run.json"))
            publish_checkpoint(staged, os.path.join(run_dir, name))
            try:
                os.rmdir(os.path.dirname(staged))  # only when empty
            except OSError:
                pass
            self._rotate(run_dir)
        self.accelerator.wait_for_everyone()

    def _fix_best_checkpoint(self, run_dir: str, staged: str) -> None:
        """The Trainer records the best checkpoint under the staging folder (or not at all, once it is renamed
        away): point it at the published `checkpoint-N` and rewrite the staged `trainer_state.json`."""
        best_step = self.state.best_global_step
        if not best_step:
            return
        self.state.best_model_checkpoint = os.path.join(run_dir, f"checkpoint-{best_step}")
        if self.args.should_save:
            self.state.save_to_json(os.path.join(staged, "trainer_state.json"))

    def _rotate(self, run_dir: str) -> None:
        """Keep the newest `save_total_limit` complete checkpoints and the best one (the Trainer's own rotation
        saw staging); folders without the `COMPLETE` marker are not ours and stay."""
        limit = self.args.save_total_limit
        if not limit:
            return
        complete = sorted(
            (int(m.group(1)), n) for n in os.listdir(run_dir)
            if (m := CHECKPOINT_PATTERN.match(n)) and os.path.isfile(os.path.join(run_dir, n, COMPLETE_MARKER))
        )
        best = self.state.best_model_checkpoint
        for _, old in complete[:-limit]:
            folder = os.path.join(run_dir, old)
            if best is None or os.path.abspath(folder) != os.path.abspath(best):
                shutil.rmtree(folder, ignore_errors=True)

    def restore_finished_run(self, checkpoint: str) -> None:
        """Take state and weights from `checkpoint` of a run that already reached `max_steps` (no extra step):
        with `load_best_model_at_end`, the weights of the best checkpoint, as at the end of `train()`."""
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
        best = self.state.best_model_checkpoint
        use_best = self.args.load_best_model_at_end and best and os.path.isdir(best)
        self._load_from_checkpoint(best if use_best else checkpoint)


def publish_checkpoint(staged: str, final: str) -> None:
    """Give `staged` the umask's modes (the Trainer's files may come out 0600), write the `COMPLETE` marker into it
    and rename it to `final` (replacing an older `final`)."""
    safe_io.apply_modes(staged)
    with open(os.path.join(staged, COMPLETE_MARKER), "w", encoding="utf-8") as handle:
        handle.write("complete\n")
    safe_io.replace_folder(staged, final)  # an older `final` is renamed aside first and removed last


class StreamingAccuracy:
    """Trainer `compute_metrics` for `batch_eval_metrics=True`: accumulates token accuracy batch by batch
    (`training.metrics.StreamingMetrics`) and reports `{"accuracy": ...}` on the last batch, then resets.

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
