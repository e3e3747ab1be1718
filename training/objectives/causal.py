"""`clm`: causal language modelling, the paper's `L_clm` (Eq. 5's first stream)."""

from __future__ import annotations

import torch

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import (
    CopySettings, check_input_ids, resolve_attention_mask, stream_ids,
)


def causal_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Causal language-modelling batch: labels are the inputs with padded positions ignored.

    Padding is taken from `attention_mask` (positions where it is 0). Only when no mask is given is it
    rebuilt from `pad_token_id`; prefer passing the mask, because with `pad == eos` (paper tokenizer) the
    id-based rule also ignores real end-of-text tokens.

    Args:
        input_ids (`torch.LongTensor` of shape `[batch, seq_len]`): token ids.
        attention_mask (`torch.Tensor` of shape `[batch, seq_len]`, *optional*): 1 for real tokens, 0 for pads.
        pad_token_id (`int`, *optional*): used to build the mask when `attention_mask` is `None`.

    Returns:
        `dict` with `input_ids` `[b, n]`, `attention_mask` `[b, n]` (long), `labels` `[b, n]` and
        `stream_ids` `[b]` (the `clm` stream).
    """
    check_input_ids(input_ids)
    mask = resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    tags = stream_ids("clm", input_ids.shape[0], input_ids.device)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "stream_ids": tags}


def _build(input_ids, attention_mask=None, *, settings: CopySettings, pad_token_id=None) -> dict:
    return causal_batch(input_ids, attention_mask, pad_token_id)


CLM = Objective("clm", _build, streams=("clm",), watch=True)
