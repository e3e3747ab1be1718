"""Evaluation metrics of the paper: entropy ratio `H_r` and Hamming token accuracy.

All functions are pure tensor code. Token accuracy is micro-averaged over targets != -100, unshifted for
autoencoders (position `i` reconstructs token `i`) and shifted for causal models (position `p` predicts
token `p + 1`). `StreamingMetrics` accumulates sums batch by batch, so an evaluation never has to hold
the logits or predictions of a whole eval set; the Trainer hooks keep only argmax ids for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.modeling_memory.sequence_ops import next_token_targets
# The paper's Table 1 H_r values are reproduced by 1 - CE / 9.03 with its 8k tokenizer (not ln 8000 = 8.987).
PAPER_8K_DENOMINATOR = 9.03


def entropy_ratio(ce_nats, vocab_size: int | None = None, denominator: float | None = None):
    """`H_r = 1 - CE / H0` (paper Eq. 2), with `H0 = ln(vocab_size)` (the CE of a uniform prediction).

    Args:
        ce_nats (`float` or `torch.Tensor`): token-mean cross-entropy in nats over valid targets.
        vocab_size (`int`, *optional*): vocabulary size, giving `H0 = ln(vocab_size)`.
        denominator (`float`, *optional*): an explicit `H0` instead, e.g. `PAPER_8K_DENOMINATOR` (9.03).
    Returns:
        `H_r`, of the same type as `ce_nats` (1 = perfect, 0 = no better than uniform).
    """
    if (vocab_size is None) == (denominator is None):
        raise ValueError(
            f"pass exactly one of vocab_size and denominator, got vocab_size={vocab_size}, denominator={denominator}"
        )
    if denominator is None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 for ln(vocab_size) > 0, got {vocab_size}")
        denominator = math.log(vocab_size)
    elif denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    return 1 - ce_nats / denominator


def _align(scores: torch.Tensor, labels: torch.Tensor, shift: bool, vocab_dim: int | None):
    """Move the vocab axis last and apply the causal shift (the last position then has no target).

    `scores` is `[..., t, V]` / `[..., V, t]` logits (`vocab_dim` says which) or `[..., t]` predicted ids.
    Returns `(scores, labels)` with `scores` `[..., t, V]` or `[..., t]` and `labels` `[..., t]`.
    """
    labels = torch.as_tensor(labels)
    scores = torch.as_tensor(scores)
    if scores.dim() == labels.dim() + 1:
        scores = scores.movedim(vocab_dim if vocab_dim is not None else -1, -1)
    elif scores.dim() != labels.dim():
        raise ValueError(f"predictions of shape {tuple(scores.shape)} do not fit labels {tuple(labels.shape)}")
    labels = labels.to(scores.device)
    if shift:
        labels = next_token_targets(labels)
    if scores.shape[: labels.dim()] != labels.shape:
        raise ValueError(f"predictions of shape {tuple(scores.shape)} do not fit labels {tuple(labels.shape)}")
    return scores, labels


def _target_mask(labels: torch.Tensor, shift: bool, exclude_chunk_boundaries: int | None) -> torch.Tensor:
    """Valid targets (`labels != -100`), optionally without the first token of every chunk after the first.

    `labels` are already shifted when `shift`: target column `p` is token `p + 1`.
    """
    mask = labels != IGNORE_INDEX
    if exclude_chunk_boundaries:
        token = torch.arange(labels.shape[-1], device=labels.device) + int(shift)
        mask = mask & (token % exclude_chunk_boundaries != 0)
    return mask


def accuracy_counts(
    logits_or_ids: torch.Tensor,
    labels: torch.Tensor,
    shift: bool = True,
    vocab_dim: int = -1,
    exclude_chunk_boundaries: int | None = None,
) -> tuple[int, int]:
    """`(correct, targets)`: argmax hits and number of targets != -100 (see `token_accuracy`)."""
    scores, labels = _align(logits_or_ids, labels, shift, vocab_dim)
    predictions = scores.argmax(-1) if scores.dim() > labels.dim() else scores
    mask = _target_mask(labels, shift, exclude_chunk_boundaries)
    return int(((predictions == labels) & mask).sum()), int(mask.sum())


def token_accuracy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    shift: bool = True,
    vocab_dim: int = -1,
    exclude_chunk_boundaries: int | None = None,
) -> float:
    """Micro-averaged fraction of correct argmax predictions over targets != -100 (paper Eq. 3).

    Args:
        logits: `[b, t, V]` (`vocab_dim=-1`), the paper's `[b, V, t]` (`vocab_dim=1`), or predicted ids `[b, t]`.
        labels (`[b, t]`): targets aligned with the inputs; -100 is ignored.
        shift: `True` for causal models (position `p` predicts `labels[p + 1]`), `False` for autoencoders.
        exclude_chunk_boundaries (`int`, *optional*): chunk size `L`; drop the targets that start a new
            chunk (token index a multiple of `L`, the first token excepted), which the paper never trains.
    Returns:
        Accuracy in [0, 1]; NaN when there is no target.
    """
    correct, total = accuracy_counts(logits, labels, shift, vocab_dim, exclude_chunk_boundaries)
    return correct / total if total else float("nan")


class StreamingMetrics:
    """Accumulates cross-entropy sum, correct count and target count over eval batches.

    >>> metrics = StreamingMetrics(shift=False, vocab_size=8000)
    >>> for batch in batches:  # doctest: +SKIP
    ...     metrics.update(model(**batch).logits, batch["labels"])
    >>> metrics.compute()  # doctest: +SKIP
    {'loss': ..., 'entropy_ratio': ..., 'accuracy': ...}

    `update` accepts logits (CE and accuracy) or predicted ids (accuracy only; loss stays NaN unless
    `update_loss` is used).
    """

    def __init__(self, shift: bool = True, vocab_size: int | None = None, denominator: float | None = None,
                 vocab_dim: int = -1, exclude_chunk_boundaries: int | None = None):
        self.shift = shift
        self.vocab_size = vocab_size
        self.denominator = denominator
        self.vocab_dim = vocab_dim
        self.exclude_chunk_boundaries = exclude_chunk_boundaries
        self.reset()

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.loss_targets = 0
        self.correct = 0
        self.targets = 0

    @torch.no_grad()
    def update(self, logits_or_ids: torch.Tensor, labels: torch.Tensor, shift: bool | None = None) -> None:
        """Add one batch: logits `[b, t, V]` (or per `vocab_dim`) or ids `[b, t]`, labels `[b, t]`."""
        shift = self.shift if shift is None else shift
        if isinstance(logits_or_ids, (tuple, list)):
            logits_or_ids = logits_or_ids[0]
        scores, aligned = _align(logits_or_ids, labels, shift, self.vocab_dim)
        mask = _target_mask(aligned, shift, self.exclude_chunk_boundaries)
        if scores.dim() > aligned.dim():
            targets = torch.where(mask, aligned, IGNORE_INDEX)
            self.update_loss(
                F.cross_entropy(scores.flatten(0, -2).float(), targets.flatten(), reduction="sum").item(),
                int(mask.sum()),
            )
            scores = scores.argmax(-1)
        self.correct += int(((scores == aligned) & mask).sum())
        self.targets += int(mask.sum())

    def update_loss(self, loss_sum: float, num_targets: int) -> None:
        """Add a summed cross-entropy (nats) over `num_targets` targets computed elsewhere."""
        self.loss_sum += float(loss_sum)
        self.loss_targets += int(num_targets)

    def compute(self) -> dict:
        """`{"loss", "entropy_ratio", "accuracy", "targets"}`; NaN where nothing was accumulated."""
        loss = self.loss_sum / self.loss_targets if self.loss_targets else float("nan")
        ratio = float("nan")
        if self.vocab_size is not None or self.denominator is not None:
            ratio = entropy_ratio(loss, vocab_size=self.vocab_size, denominator=self.denominator)
        accuracy = self.correct / self.targets if self.targets else float("nan")
        return {"loss": loss, "entropy_ratio": ratio, "accuracy": accuracy, "targets": self.targets}


# ----------------------------------------------------------------------------- transformers.Trainer hooks
def preprocess_logits_for_metrics(logits, labels) -> torch.Tensor:
    """Trainer hook: keep argmax ids `[b, t]` instead of logits, so evaluation stores `t` ints per row, not `t * V`.

    Model outputs with extra fields arrive as a tuple whose first element is the logits `[b, t, V]`.
    """
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.argmax(dim=-1)


def make_compute_metrics(
    shift: bool, vocab_size: int | None = None, exclude_chunk_boundaries: int | None = None,
    chunk_rows: int = 64,
) -> Callable:
    """Build a Trainer `compute_metrics(EvalPrediction) -> {"accuracy": ...}`.

    With `preprocess_logits_for_metrics` the predictions are ids and only accuracy is reported (`H_r` then
    comes from `eval_loss` in the training code). Given raw logits, it also reports `loss` and
    `entropy_ratio` (ln `vocab_size`), streaming over `chunk_rows` rows at a time.
    """

    def compute_metrics(eval_prediction) -> dict:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions, labels = torch.as_tensor(predictions), torch.as_tensor(eval_prediction.label_ids)
        metrics = StreamingMetrics(shift, vocab_size=vocab_size,
                                   exclude_chunk_boundaries=exclude_chunk_boundaries)
        for start in range(0, labels.shape[0], chunk_rows):
            metrics.update(predictions[start : start + chunk_rows], labels[start : start + chunk_rows])
        result = metrics.compute()
        keys = ["accuracy"]
        if predictions.is_floating_point():
            keys += ["loss", "entropy_ratio"] if vocab_size is not None else ["loss"]
        return {key: result[key] for key in keys}

    return compute_metrics
