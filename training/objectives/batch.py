"""What every objective's batch builder shares: the copy settings a model config records, the input checks, the
loss-stream tags, and the collator that pads examples and builds the batch of a registered objective.

Builders take `input_ids` of shape `[batch, seq_len]` (and optionally an attention mask and labels) and return a
new batch dict; the input tensors are never modified. Labels follow Hugging Face semantics: they are aligned with
`input_ids`, the model shifts them internally (the label at position `p` is the target predicted from position
`p - 1`), and `-100` marks ignored positions.

Padding is always identified by the attention mask, never by token id: the paper's tokenizer uses
`pad_token_id == eos_token_id`, so masking labels by id would also drop genuine end-of-text tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from memory_models.modeling_memory import IGNORE_INDEX, LOSS_STREAMS
from memory_models.training.objectives import Objective, get_objective

PADDING_SIDES = ("left", "right")


@dataclass(frozen=True)
class CopySettings:
    """How copy rows are built (the paper's copy, blank-copy and delimiter settings), in one place.

    Args:
        blank (`bool`, defaults to `False`): fill the copied half with `blank_token_id` (blank copy: the targets
            can only come from the memories).
        blank_token_id (`int`, defaults to 1): the blank token (paper: id 1, the 8k tokenizer's pad/eos).
        delimiter_token_id (`int`, *optional*): token written `delimiter_length` times at the start of the copied
            half (paper: three special tokens); `None` for no delimiter.
        delimiter_length (`int`, defaults to 3): number of delimiter tokens, `< n / 2`.
    """

    blank: bool = False
    blank_token_id: int = 1
    delimiter_token_id: int | None = None
    delimiter_length: int = 3

    @classmethod
    def from_config(cls, config: Any, blank: bool = False) -> "CopySettings":
        """The settings a model config records (`blank_token_id`, defaulting to its pad token, and
        `copy_delimiter_token_id` / `copy_delimiter_length`)."""
        pad = getattr(config, "pad_token_id", None)
        blank_token_id = getattr(config, "blank_token_id", None)
        blank_token_id = blank_token_id if blank_token_id is not None else (pad if pad is not None else 1)
        length = getattr(config, "copy_delimiter_length", None)
        return cls(blank, blank_token_id, getattr(config, "copy_delimiter_token_id", None),
                   3 if length is None else length)


def check_input_ids(input_ids: torch.Tensor) -> None:
    """`input_ids` must be a 2-D tensor `[batch, seq_len]`."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"`input_ids` must be a 2-D tensor [batch, seq_len], got {shape}.")


def resolve_attention_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int | None
) -> torch.LongTensor:
    """Return a `[batch, seq_len]` long mask: the given one, else `input_ids != pad_token_id`, else all ones."""
    if attention_mask is None:
        if pad_token_id is None:
            return torch.ones_like(input_ids, dtype=torch.long)
        return (input_ids != pad_token_id).long()
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` shape {tuple(attention_mask.shape)} does not match `input_ids` shape "
            f"{tuple(input_ids.shape)}."
        )
    return attention_mask.long()


def resolve_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None
) -> torch.LongTensor:
    """Return `labels` (checked against `input_ids`), or the causal labels when `labels` is `None`."""
    if labels is None:
        return input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    if labels.shape != input_ids.shape:
        raise ValueError(
            f"`labels` shape {tuple(labels.shape)} does not match `input_ids` shape {tuple(input_ids.shape)}."
        )
    return labels


def stream_ids(stream: str, rows: int, device=None) -> torch.LongTensor:
    """`[rows]` tags of loss stream `stream` (one of `modeling_memory.LOSS_STREAMS`: the model weighs each stream's
    loss by its config's `<stream>_loss_weight`)."""
    if stream not in LOSS_STREAMS:
        raise ValueError(f"unknown loss stream {stream!r}; the models have {LOSS_STREAMS}")
    return torch.full((rows,), LOSS_STREAMS.index(stream), dtype=torch.long, device=device)


def check_streams(objective: Objective, batch: Mapping[str, torch.Tensor]) -> None:
    """A batch tags its rows with the loss streams its objective declares, and only with those."""
    tags = batch.get("stream_ids")
    if tags is None:
        if objective.streams:
            raise ValueError(f"objective {objective.name!r} declares loss streams {objective.streams} but its batch "
                             "has no `stream_ids`")
        return
    found = {LOSS_STREAMS[i] if 0 <= i < len(LOSS_STREAMS) else i for i in tags.unique().tolist()}
    if not found <= set(objective.streams):
        raise ValueError(f"objective {objective.name!r} tags rows with loss streams {sorted(found, key=str)}; it "
                         f"declares {objective.streams}")


def build_objective_batch(
    objective: str,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    labels: torch.LongTensor | None = None,
    settings: CopySettings = CopySettings(),
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """The batch of the registered objective `objective` from `input_ids` `[b, n]` (and the rows' own `labels`, if
    they have them): its record's `build_batch`, its stream tags checked."""
    record = get_objective(objective)
    batch = record.build_batch(input_ids, attention_mask, labels=labels, settings=settings, pad_token_id=pad_token_id)
    check_streams(record, batch)
    return batch


def _as_long_tensor(values: Any) -> torch.LongTensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    if tensor.dim() != 1:
        raise ValueError(f"Each feature must be a 1-D sequence of token ids, got shape {tuple(tensor.shape)}.")
    return tensor.long()


@dataclass
class ObjectiveCollator:
    """Data collator that pads a list of tokenised examples and builds the batch of one training objective.

    Args:
        objective (`str`): a registered objective (`training.objectives.objective_names()`).
        pad_token_id (`int`): padding token id (paper tokenizer: 1, equal to eos).
        copy ([`CopySettings`], *optional*): copy rows' settings; default: no delimiter, blank = `pad_token_id`.
        max_length (`int`, *optional*): pad/truncate every row to this length; default: the longest row.
        padding_side (`str`, *optional*, defaults to `"right"`): `"left"` or `"right"`.

    Example:

    >>> collator = ObjectiveCollator("copy", pad_token_id=1, copy=CopySettings(delimiter_token_id=3), max_length=8)
    >>> batch = collator([{"input_ids": [5, 6, 7, 8, 9]}])
    >>> batch["input_ids"].shape
    torch.Size([1, 8])
    """

    objective: str
    pad_token_id: int
    copy: CopySettings | None = None
    max_length: int | None = None
    padding_side: str = "right"

    def __post_init__(self):
        get_objective(self.objective)  # an unknown name is refused, with the registered ones
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"`padding_side` must be one of {PADDING_SIDES}, got {self.padding_side!r}.")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"`max_length` must be a positive integer, got {self.max_length}.")
        if self.copy is None:
            self.copy = CopySettings(blank_token_id=self.pad_token_id)

    @classmethod
    def from_config(cls, objective: str, config: Any, **kwargs) -> "ObjectiveCollator":
        """The collator a model config describes: its `pad_token_id` (default 1) and [`CopySettings.from_config`];
        `kwargs` override any field."""
        pad_token_id = getattr(config, "pad_token_id", None)
        values = {"pad_token_id": 1 if pad_token_id is None else pad_token_id, "copy": CopySettings.from_config(config)}
        values.update(kwargs)
        return cls(objective=objective, **values)

    def pad(self, features: Sequence[Mapping[str, Any]], key: str = "input_ids",
            value: int | None = None) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Truncate (keeping the first tokens) and pad the examples' `key` (`input_ids`, padded with the pad token,
        or `labels`, padded with `value`); returns it and the `attention_mask`, both `[batch, length]`."""
        if len(features) == 0:
            raise ValueError("`features` is empty: cannot collate a batch of 0 examples.")
        ids = [_as_long_tensor(feature[key])[: self.max_length] for feature in features]
        masks = [
            _as_long_tensor(feature["attention_mask"])[: self.max_length]
            if feature.get("attention_mask") is not None
            else torch.ones_like(row)
            for feature, row in zip(features, ids)
        ]
        if any(mask.shape != row.shape for mask, row in zip(masks, ids)):
            raise ValueError(f"Each feature's `attention_mask` must have the length of its `{key}`.")
        value = self.pad_token_id if value is None else value
        pad_kw = {"batch_first": True, "padding_side": self.padding_side}
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, padding_value=value, **pad_kw)
        attention_mask = torch.nn.utils.rnn.pad_sequence(masks, padding_value=0, **pad_kw)
        extra = 0 if self.max_length is None else self.max_length - input_ids.shape[1]
        if extra > 0:
            widths = (0, extra) if self.padding_side == "right" else (extra, 0)
            input_ids = torch.nn.functional.pad(input_ids, widths, value=value)
            attention_mask = torch.nn.functional.pad(attention_mask, widths, value=0)
        return input_ids, attention_mask

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate `features` (dicts with `input_ids`, optionally `attention_mask` and the rows' own `labels`) into
        an objective batch."""
        input_ids, attention_mask = self.pad(features)
        labels = self.pad(features, "labels", IGNORE_INDEX)[0] if features[0].get("labels") is not None else None
        return build_objective_batch(self.objective, input_ids, attention_mask, labels=labels, settings=self.copy,
                                     pad_token_id=self.pad_token_id)
