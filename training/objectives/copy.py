"""`copy` and `blank_copy`: the paper's copy objectives (the second half of a row repeats the first; blank copy
hides the repeat behind blanks, so that its targets can only come from the memories)."""

from __future__ import annotations

from dataclasses import replace

import torch

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import (
    CopySettings, check_input_ids, resolve_attention_mask, resolve_labels, stream_ids,
)


def _copy_half_length(seq_len: int, delimiter_token_id: int | None, delimiter_length: int) -> int:
    """Validate a copy layout and return `n / 2`."""
    if seq_len % 2 != 0:
        raise ValueError(f"The copy objective needs an even sequence length, got n={seq_len}.")
    half = seq_len // 2
    if delimiter_token_id is not None and not 1 <= delimiter_length < half:
        raise ValueError(
            f"`delimiter_length` must satisfy 1 <= delimiter_length < n / 2, got delimiter_length="
            f"{delimiter_length} with n={seq_len}."
        )
    return half


def copy_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.LongTensor | None = None,
    *,
    settings: CopySettings = CopySettings(),
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Copy / blank-copy batch (the paper's copy and blank-copy objectives), built with tensor ops for the whole batch.

    For a row `x` of even length `n` and `h = n / 2`:

    * input: `[x[:h], x[:h]]` (with `settings.blank`: `[x[:h], blank_token_id * h]`); if `delimiter_token_id`
      is not `None`, positions `h .. h + delimiter_length - 1` are overwritten with the delimiter;
    * labels: `[-100] * h + labels[:h]` (`labels` default to the causal labels); with a delimiter, label
      positions `h .. h + delimiter_length - 2` are also ignored, so the first copy target is
      `x[delimiter_length - 1]`, predicted from the last delimiter (paper: `x_2` after two of three
      delimiters);
    * attention mask: `[m[:h], m[:h]]`, i.e. the copied half carries the first half's padding pattern (this
      fixes a masking bug of the research code), with the delimiter positions set to 1.

    Args:
        input_ids (`torch.LongTensor` of shape `[batch, n]`): token ids, `n` even.
        attention_mask (`torch.Tensor` of shape `[batch, n]`, *optional*): 1 for real tokens, 0 for pads.
        labels (`torch.LongTensor` of shape `[batch, n]`, *optional*): labels of the original sequence;
            only the first half is used. Defaults to the causal labels of `input_ids`.
        settings ([`CopySettings`]): blank copy, blank token and delimiter.
        pad_token_id (`int`, *optional*): used to build the mask when `attention_mask` is `None`.

    Returns:
        `dict` with `input_ids`, `attention_mask`, `labels` (each `[b, n]`) and `stream_ids` `[b]` (the `copy`
        stream).
    """
    check_input_ids(input_ids)
    delimiter_token_id, delimiter_length = settings.delimiter_token_id, settings.delimiter_length
    half = _copy_half_length(input_ids.shape[1], delimiter_token_id, delimiter_length)
    mask = resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = resolve_labels(input_ids, mask, labels)

    first = input_ids[:, :half]  # (b, h)
    second = torch.full_like(first, settings.blank_token_id) if settings.blank else first
    copy_ids = torch.cat([first, second], dim=1)  # (b, n), a new tensor
    copy_mask = torch.cat([mask[:, :half], mask[:, :half]], dim=1)
    ignored = torch.full_like(labels[:, :half], IGNORE_INDEX)
    copy_labels = torch.cat([ignored, labels[:, :half]], dim=1)
    if delimiter_token_id is not None:
        copy_ids[:, half : half + delimiter_length] = delimiter_token_id
        copy_mask[:, half : half + delimiter_length] = 1
        # Targets hidden under the delimiter, except the last one (predicted from the last delimiter).
        copy_labels[:, half : half + delimiter_length - 1] = IGNORE_INDEX
    tags = stream_ids("copy", input_ids.shape[0], input_ids.device)
    return {"input_ids": copy_ids, "attention_mask": copy_mask, "labels": copy_labels, "stream_ids": tags}


def _build_copy(input_ids, attention_mask=None, *, labels=None, settings: CopySettings, pad_token_id=None) -> dict:
    return copy_batch(input_ids, attention_mask, labels, settings=settings, pad_token_id=pad_token_id)


def _build_blank_copy(input_ids, attention_mask=None, *, labels=None, settings: CopySettings,
                      pad_token_id=None) -> dict:
    return copy_batch(input_ids, attention_mask, labels, settings=replace(settings, blank=True),
                      pad_token_id=pad_token_id)


COPY = Objective("copy", _build_copy, streams=("copy",), needs="memory", evaluation="full_length", watch=True)
BLANK_COPY = Objective("blank_copy", _build_blank_copy, streams=("copy",), needs="memory", evaluation="full_length",
                       watch=True)
# Blank-copy and copy rows in equal numbers (a mixture: `training.trainer.RoutingCollator` builds each row by its
# part). The blank rows can only be answered from the memories; the copy rows show the decoder its own copy so far,
# as `generate` does when it writes a copy token by token (a decoder trained on blank copy alone copies far worse
# with real tokens in its chunk: docs/training.md).
COPY_AND_BLANK_COPY = Objective("copy_and_blank_copy", None, streams=("copy",), needs="memory", evaluation=None,
                                parts=("blank_copy", "copy"))
