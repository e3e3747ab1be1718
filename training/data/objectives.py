"""Training objectives of the memory models (causal, copy, blank copy, combined: paper Eq. 5) as vectorised, pure batch builders.

Every builder takes `input_ids` of shape `[batch, seq_len]` (and optionally an attention mask and labels)
and returns a new batch dict; the input tensors are never modified. Labels follow Hugging Face semantics:
they are aligned with `input_ids`, the model shifts them internally (the label at position `p` is the
target predicted from position `p - 1`), and `-100` marks ignored positions.

Padding is always identified by the attention mask, never by token id: the paper's tokenizer uses
`pad_token_id == eos_token_id`, so masking labels by id would also drop genuine end-of-text tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.data import OBJECTIVES

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


def _check_input_ids(input_ids: torch.Tensor) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"`input_ids` must be a 2-D tensor [batch, seq_len], got {shape}.")


def _resolve_attention_mask(
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


def _resolve_labels(
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
        `stream_ids` `[b]` (all 0).
    """
    _check_input_ids(input_ids)
    mask = _resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    stream_ids = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "stream_ids": stream_ids}


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
        `dict` with `input_ids`, `attention_mask`, `labels` (each `[b, n]`) and `stream_ids` `[b]` (all 1).
    """
    _check_input_ids(input_ids)
    delimiter_token_id, delimiter_length = settings.delimiter_token_id, settings.delimiter_length
    half = _copy_half_length(input_ids.shape[1], delimiter_token_id, delimiter_length)
    mask = _resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = _resolve_labels(input_ids, mask, labels)

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
    stream_ids = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    return {"input_ids": copy_ids, "attention_mask": copy_mask, "labels": copy_labels, "stream_ids": stream_ids}


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
    `stream_ids` entry (0 = causal, 1 = copy) lets the loss weight the two streams separately.

    Args:
        input_ids (`torch.LongTensor` of shape `[batch, n]`): token ids, `n` even.
        attention_mask, labels, settings, pad_token_id: as in [`copy_batch`].

    Returns:
        `dict` with `input_ids`, `attention_mask`, `labels` (each `[2b, n]`) and `stream_ids` `[2b]`.
    """
    causal = causal_batch(input_ids, attention_mask, pad_token_id)
    causal["labels"] = _resolve_labels(input_ids, causal["attention_mask"], labels)
    copy = copy_batch(input_ids, causal["attention_mask"], causal["labels"], settings=settings)
    return {key: torch.cat([causal[key], copy[key]], dim=0) for key in causal}


def autoencode_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Autoencoder / information-retention batch: labels are the inputs themselves (unshifted targets).

    The tensors equal [`causal_batch`]'s; only the consumer differs (an autoencoder compares position `i`
    with token `i`). No `stream_ids` entry.

    Returns:
        `dict` with `input_ids`, `attention_mask` and `labels`, each `[b, n]`.
    """
    batch = causal_batch(input_ids, attention_mask, pad_token_id)
    batch.pop("stream_ids")
    return batch


def build_objective_batch(
    objective: str,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    settings: CopySettings = CopySettings(),
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Build the batch of one of [`OBJECTIVES`] from `input_ids` `[b, n]`.

    `"blank_copy"` is `"copy"` with `settings.blank` set; `settings.blank` also makes `"combined"` use blank
    copies (the paper's combined-blank runs).

    Returns:
        The dict of [`causal_batch`], [`copy_batch`], [`combined_batch`] (`[2b, n]`) or [`autoencode_batch`].
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective {objective!r}; expected one of {OBJECTIVES}.")
    if objective == "clm":
        return causal_batch(input_ids, attention_mask, pad_token_id)
    if objective == "autoencode":
        return autoencode_batch(input_ids, attention_mask, pad_token_id)
    if objective == "blank_copy":
        settings = replace(settings, blank=True)
    builder = combined_batch if objective == "combined" else copy_batch
    return builder(input_ids, attention_mask, settings=settings, pad_token_id=pad_token_id)


def _as_long_tensor(values: Any) -> torch.LongTensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    if tensor.dim() != 1:
        raise ValueError(f"Each feature must be a 1-D sequence of token ids, got shape {tuple(tensor.shape)}.")
    return tensor.long()


@dataclass
class ObjectiveCollator:
    """Data collator that pads a list of tokenised examples and builds the batch of one training objective.

    Args:
        objective (`str`): one of [`OBJECTIVES`].
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
        if self.objective not in OBJECTIVES:
            raise ValueError(f"Unknown objective {self.objective!r}; expected one of {OBJECTIVES}.")
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

    def pad(self, features: Sequence[Mapping[str, Any]]) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Truncate (keeping the first tokens) and pad the examples; returns `input_ids` and `attention_mask`,
        both `[batch, length]`."""
        if len(features) == 0:
            raise ValueError("`features` is empty: cannot collate a batch of 0 examples.")
        ids = [_as_long_tensor(feature["input_ids"])[: self.max_length] for feature in features]
        masks = [
            _as_long_tensor(feature["attention_mask"])[: self.max_length]
            if feature.get("attention_mask") is not None
            else torch.ones_like(row)
            for feature, row in zip(features, ids)
        ]
        if any(mask.shape != row.shape for mask, row in zip(masks, ids)):
            raise ValueError("Each feature's `attention_mask` must have the length of its `input_ids`.")
        pad_kw = {"batch_first": True, "padding_side": self.padding_side}
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, padding_value=self.pad_token_id, **pad_kw)
        attention_mask = torch.nn.utils.rnn.pad_sequence(masks, padding_value=0, **pad_kw)
        extra = 0 if self.max_length is None else self.max_length - input_ids.shape[1]
        if extra > 0:
            widths = (0, extra) if self.padding_side == "right" else (extra, 0)
            input_ids = torch.nn.functional.pad(input_ids, widths, value=self.pad_token_id)
            attention_mask = torch.nn.functional.pad(attention_mask, widths, value=0)
        return input_ids, attention_mask

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate `features` (dicts with `input_ids` and optionally `attention_mask`) into an objective batch."""
        input_ids, attention_mask = self.pad(features)
        return build_objective_batch(self.objective, input_ids, attention_mask, settings=self.copy,
                                     pad_token_id=self.pad_token_id)
