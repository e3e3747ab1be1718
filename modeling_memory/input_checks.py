"""Input validation shared by the public entry points (`forward`, `encode`, `generate`) of every model family.

Each check raises a `ValueError` that names the offending values instead of an `IndexError` deep inside an
embedding, a silent broadcast or NaN logits. The value checks (token range, finite memories) cost one
reduction and one host sync per call; the memory model's cached decoding steps skip them (their tokens
come from `generate` itself).
"""

import torch

from .sequence_ops import IGNORE_INDEX


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int, allow_ignore: bool = False) -> None:
    """`ids` must be an integer `[batch, seq_len]` tensor with values in `[0, vocab_size)` (or -100 if allowed)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"{name} must be [batch, seq_len], got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        return
    values = ids[ids != IGNORE_INDEX] if allow_ignore else ids
    if values.numel() == 0:
        return
    low, high = torch.aminmax(values)
    low, high = int(low), int(high)
    if low < 0 or high >= vocab_size:
        allowed = f"[0, {vocab_size})" + (" or -100" if allow_ignore else "")
        raise ValueError(f"{name} holds values from {low} to {high}, outside the vocabulary {allowed}")


def check_matches(name: str, tensor: torch.Tensor | None, shape: tuple, what: str = "input_ids") -> None:
    """`tensor` (if given) must have exactly `shape` (no broadcasting)."""
    if tensor is not None and tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}, but {what} is {tuple(shape)}; "
                         "they must match exactly (no broadcasting)")


def check_targets(vocab_size: int, shape: tuple, labels=None, shift_labels=None) -> None:
    """`labels` / `shift_labels` (if given) must be `[batch, seq_len]` of the input and hold ids or -100."""
    for name, targets in (("labels", labels), ("shift_labels", shift_labels)):
        if targets is not None:
            check_matches(name, targets, shape)
            check_token_ids(name, targets, vocab_size, allow_ignore=True)


def check_embeds(name: str, embeds: torch.Tensor, width: int, batch: int | None = None) -> None:
    """`embeds` must be a finite floating-point `[batch, n, width]` tensor (with the given batch size)."""
    if not embeds.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {embeds.dtype}")
    if embeds.ndim != 3 or embeds.shape[-1] != width:
        raise ValueError(f"{name} must be [batch, n, {width}], got shape {tuple(embeds.shape)}")
    if batch is not None and embeds.shape[0] != batch:
        raise ValueError(f"{name} has batch size {embeds.shape[0]}, but the input has {batch} rows "
                         "(no broadcasting: give one row per input row)")
    if embeds.numel() and not bool(torch.isfinite(embeds).all()):
        raise ValueError(f"{name} holds NaN or inf values")


def check_inputs(vocab_size: int, width: int, input_ids=None, attention_mask=None, inputs_embeds=None,
                 labels=None, shift_labels=None) -> tuple[int, int]:
    """The common checks of a `forward`: exactly one of ids/embeds, ids in `[0, vocab_size)`, embeds of
    `width`, mask and (shift) labels of the same `[batch, seq_len]`, labels in range. Returns `(batch, seq_len)`."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        check_token_ids("input_ids", input_ids, vocab_size)
        shape, what = tuple(input_ids.shape), "input_ids"
    else:
        check_embeds("inputs_embeds", inputs_embeds, width)
        shape, what = tuple(inputs_embeds.shape[:2]), "inputs_embeds [batch, seq_len]"
    check_matches("attention_mask", attention_mask, shape, what)
    check_targets(vocab_size, shape, labels, shift_labels)
    return shape
