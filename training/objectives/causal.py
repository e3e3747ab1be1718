"""`clm`: causal language modelling, the paper's `L_clm` (Eq. 5's first stream)."""

from __future__ import annotations

import torch

from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import (
    CopySettings, check_input_ids, resolve_attention_mask, resolve_labels, stream_ids,
)


def causal_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
    *,
    labels: torch.LongTensor | None = None,
) -> dict[str, torch.Tensor]:
    """Causal language-modelling batch: labels are the inputs with padded positions ignored (or the given ones).

    Padding is taken from `attention_mask` (positions where it is 0). Only when no mask is given is it
    rebuilt from `pad_token_id`; prefer passing the mask, because with `pad == eos` (paper tokenizer) the
    id-based rule also ignores real end-of-text tokens.

    Args:
        input_ids (`torch.LongTensor` of shape `[batch, seq_len]`): token ids.
        attention_mask (`torch.Tensor` of shape `[batch, seq_len]`, *optional*): 1 for real tokens, 0 for pads.
        pad_token_id (`int`, *optional*): used to build the mask when `attention_mask` is `None`.
        labels (`torch.LongTensor` of shape `[batch, seq_len]`, *optional*): the rows' own targets (e.g. answer-only).

    Returns:
        `dict` with `input_ids` `[b, n]`, `attention_mask` `[b, n]` (long), `labels` `[b, n]` and
        `stream_ids` `[b]` (the `clm` stream).
    """
    check_input_ids(input_ids)
    mask = resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = resolve_labels(input_ids, mask, labels)
    tags = stream_ids("clm", input_ids.shape[0], input_ids.device)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "stream_ids": tags}


def _build(input_ids, attention_mask=None, *, labels=None, settings: CopySettings, pad_token_id=None) -> dict:
    return causal_batch(input_ids, attention_mask, pad_token_id, labels=labels)


CLM = Objective("clm", _build, streams=("clm",), watch=True)
