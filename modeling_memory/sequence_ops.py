"""Sequence helpers shared by the model families: per-row padding rolls and the shifted causal-LM loss."""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def row_gather(x: torch.Tensor, index: torch.LongTensor) -> torch.Tensor:
    """`out[r, t] = x[r, index[r, t]]` for `x` `[b, T, ...]` and `index` `[b, T']`."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, index]


def row_lengths(mask: torch.Tensor) -> torch.LongTensor:
    """Per row of a `[b, T]` mask: index of the last real token + 1 (0 for rows without real tokens)."""
    length = mask.shape[1]
    last = length - mask.flip(1).long().argmax(1)
    return torch.where(mask.any(1), last, 0)


def pool_states(hidden: torch.Tensor, pooling: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The one position of each row of `hidden` `[b, T, d]` that becomes its embedding (a memory) -> `[b, d]`.

    `"last"`: position `T-1`; `"penultimate"`: `T-2` (for causal mixers, whose last row is never trained; needs
    `T >= 2`); `"last_nonpad"`: each row's last real token of `mask` `[b, T]` (left or right padding), and position
    `T-1`, as `"last"`, for a row without any real token or when there is no mask.
    """
    length = hidden.shape[1]
    if pooling == "penultimate":
        if length < 2:
            raise ValueError(f"pooling='penultimate' needs at least 2 tokens, got seq_len={length}")
        return hidden[:, -2]
    if pooling == "last" or mask is None:
        return hidden[:, -1]
    mask = mask.to(hidden.device).bool()
    last = torch.where(mask.any(1), row_lengths(mask) - 1, length - 1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def left_pad_shift(mask: torch.Tensor) -> torch.LongTensor | None:
    """Per-row index of the first real token (0 for rows without any), or `None` if no row is left-padded."""
    mask = mask.bool()
    shift = torch.where(mask.any(1), mask.long().argmax(1), 0)  # argmax returns the first maximum
    return shift if bool(shift.any()) else None


def roll_rows(x: torch.Tensor, shift: torch.LongTensor | None, inverse: bool = False) -> torch.Tensor:
    """Roll each row left by `shift[r]` (`out[r, t] = x[r, (t + shift[r]) % T]`), or back if `inverse`.

    Left padding becomes right padding, so every row's chunk (segment) grid starts at its first real token
    and a row in a padded batch computes exactly what it computes alone.
    """
    if shift is None or x is None:
        return x
    length = x.shape[1]
    sign = -1 if inverse else 1
    index = (torch.arange(length, device=x.device)[None] + sign * shift[:, None]) % length  # (b, T)
    return row_gather(x, index)


def next_token_targets(labels: torch.LongTensor) -> torch.LongTensor:
    """The label shift, in one place: `targets[..., p] = labels[..., p + 1]` (position `p` predicts the next token),
    the last position without a target (-100); same shape as `labels`."""
    return F.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)


def causal_lm_loss(logits: torch.Tensor, labels: torch.LongTensor | None, num_items_in_batch=None,
                   shift_labels: torch.LongTensor | None = None) -> torch.Tensor:
    """Token-mean cross-entropy of `logits[:, p]` against `labels[:, p + 1]`, ignoring -100.

    `shift_labels` (`[b, T]`, already aligned with the logits: the target of position `p` at `p`, as the `Trainer`
    passes them under context parallelism) replace the shifted `labels`. With `num_items_in_batch` (the targets of a
    whole optimizer step, over its gradient-accumulation micro-batches and processes, as the `Trainer` counts them)
    the sum is divided by that count instead, so that the step's loss is one token mean however the batch is split.
    A batch without any target gives a zero loss that still has a grad_fn (never NaN).
    """
    if shift_labels is None:
        shift_labels = next_token_targets(labels)
    targets = shift_labels.flatten().to(logits.device)
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / loss_divisor(targets, num_items_in_batch)


def loss_divisor(labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """The number of targets (labels != -100) of `labels`, or `num_items_in_batch` when given; at least 1."""
    if num_items_in_batch is None:
        return (labels != IGNORE_INDEX).sum().clamp(min=1)
    count = torch.as_tensor(num_items_in_batch, device=labels.device)
    if count.numel() != 1:
        raise ValueError(f"num_items_in_batch must be a single count for this model, got shape {tuple(count.shape)}")
    return count.reshape(()).clamp(min=1)


def map_row_state(cache, names, fn) -> None:
    """Apply `fn` (a reorder / repeat / select over the batch axis) to each tensor attribute `names` of a cache
    that is set; shared by `MemoryCache` and `RecurrentMemoryCache` for beams and batch expansion."""
    for name in names:
        value = getattr(cache, name)
        if value is not None:
            setattr(cache, name, fn(value))
