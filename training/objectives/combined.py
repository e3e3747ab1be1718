"""`combined`: the paper's combined objective (Eq. 5), `L = clm_loss_weight * L_clm + copy_loss_weight * L_copy`,
both streams in one batch; `combined_blank`: the same with blank-copy rows (the paper's "combined (blank copy)")."""

from __future__ import annotations

from dataclasses import replace

import torch

from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.causal import causal_batch
from memory_models.training.objectives.copy import copy_batch


def combined_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.LongTensor | None = None,
    *,
    settings: CopySettings = CopySettings(),
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Combined objective (paper Eq. 5) as one `2b` batch: the causal rows, then the copy rows.

    Running both streams in a single forward pass replaces the reference's two sequential passes. Rows
    `0 .. b-1` are [`causal_batch`] (with `labels` if given), rows `b .. 2b-1` are [`copy_batch`]; the
    `stream_ids` entry (`clm`, then `copy`) lets the loss weight the two streams separately. `settings.blank`
    makes the copy rows blank copies (the paper's combined-blank runs).

    Args:
        input_ids (`torch.LongTensor` of shape `[batch, n]`): token ids, `n` even.
        attention_mask, labels, settings, pad_token_id: as in [`copy_batch`].

    Returns:
        `dict` with `input_ids`, `attention_mask`, `labels` (each `[2b, n]`) and `stream_ids` `[2b]`.
    """
    causal = causal_batch(input_ids, attention_mask, pad_token_id, labels=labels)
    copy = copy_batch(input_ids, causal["attention_mask"], causal["labels"], settings=settings)
    return {key: torch.cat([causal[key], copy[key]], dim=0) for key in causal}


def _build(input_ids, attention_mask=None, *, labels=None, settings: CopySettings, pad_token_id=None) -> dict:
    return combined_batch(input_ids, attention_mask, labels, settings=settings, pad_token_id=pad_token_id)


COMBINED = Objective("combined", _build, streams=("clm", "copy"), needs="memory", evaluation=None)


def _build_blank(input_ids, attention_mask=None, *, labels=None, settings: CopySettings, pad_token_id=None) -> dict:
    return combined_batch(input_ids, attention_mask, labels, settings=replace(settings, blank=True),
                          pad_token_id=pad_token_id)


# Its copy rows can only be answered from the memories (as in blank copy) while its causal rows train the token
# path: a curriculum stage over a frozen encoder that does not leave the decoder's token embeddings untrained.
COMBINED_BLANK = Objective("combined_blank", _build_blank, streams=("clm", "copy"), needs="memory", evaluation=None)
