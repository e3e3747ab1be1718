"""`autoencode`: an autoencoder reconstructs its input from its embedding (the information-retention objective)."""

from __future__ import annotations

import torch

from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.causal import causal_batch


def autoencode_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
    *,
    labels: torch.LongTensor | None = None,
) -> dict[str, torch.Tensor]:
    """Autoencoder / information-retention batch: labels are the inputs themselves (unshifted targets).

    The tensors equal [`causal_batch`]'s; only the consumer differs (an autoencoder compares position `i`
    with token `i`). No `stream_ids` entry.

    Returns:
        `dict` with `input_ids`, `attention_mask` and `labels`, each `[b, n]`.
    """
    batch = causal_batch(input_ids, attention_mask, pad_token_id, labels=labels)
    batch.pop("stream_ids")
    return batch


def _build(input_ids, attention_mask=None, *, labels=None, settings: CopySettings, pad_token_id=None) -> dict:
    return autoencode_batch(input_ids, attention_mask, pad_token_id, labels=labels)


AUTOENCODE = Objective("autoencode", _build, streams=(), needs="autoencoder", watch=True, shifted=False)
