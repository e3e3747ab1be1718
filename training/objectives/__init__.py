"""The training objectives: one registered [`Objective`] record each.

A record holds everything training needs to know about an objective: how its rows are made from the corpus
(`rows`: by default the documents cut into rows of `--context` tokens), how its batches are built (`build_batch`),
which loss streams its rows feed (the model config's `<stream>_loss_weight` weighs each), what model it trains
(`needs`), whether and on which held-out rows it is evaluated (`evaluation`, `watch`) and how its token accuracy
is scored (`shifted`). `memory-models train --objective NAME`, `TrainJob(objective=NAME)` and the collators look
the name up here.

    >>> from memory_models.training.objectives import get_objective, objective_names
    >>> objective_names()
    ('clm', 'copy', 'blank_copy', 'combined', 'combined_blank', 'autoencode', 'retrieval', 'combined_retrieval')
    >>> get_objective("blank_copy").streams
    ('copy',)

This module imports only the standard library, so that the command line lists the registry without loading
torch; a record's own module is imported the first time the record is asked for.

How to add an objective (say `retrieval`, which `objectives/retrieval.py` is):

1. Write `training/objectives/retrieval.py`: its batch builder, `(input_ids [b, n], attention_mask [b, n] or None,
   *, labels [b, n] or None, settings: CopySettings, pad_token_id) -> dict` with `input_ids`, `attention_mask`,
   `labels` (aligned with the inputs, `-100` where nothing is predicted; the model shifts them) and `stream_ids`
   (`[b]`, from `objectives.batch.stream_ids`) for each loss stream it declares. `labels` are the rows' own
   targets when its rows carry them (padded with -100), e.g. answer-only targets; then, if its rows are not the
   corpus cut into rows, its row maker `(texts, tokenizer, config, *, context, pack, seed) -> datasets.Dataset`
   (`texts`: a split of `--dataset` with a `"text"` column; rows with `input_ids`, `attention_mask` and
   optionally `labels`); then its record, `RETRIEVAL = Objective("retrieval", build_batch, rows=retrieval_rows,
   needs="memory")`. `objectives/copy.py` is a complete builder; `objectives/batch.py` holds the shared checks.
2. Register it: one line, `"retrieval": "memory_models.training.objectives.retrieval:RETRIEVAL"`, in `BUILTIN`
   below. (Code outside the package calls `register_objective(record)` instead, before it builds its job.)
3. Test it in `tests/test_objectives.py`: the builder's exact positions on a small hand-written batch (the
   registry-wide test there checks its declared streams; `tests/test_job.py` trains a registered toy objective
   through `train.run`, a template for a run of yours).

A *mixture* (`combined_retrieval`) is a record with `parts` and no builder of its own: its training rows are its
parts' rows, in equal numbers (a smaller part repeated), each tagged with its part, and each batch is built row by
row by the part that made the row (`training.trainer.RoutingCollator`); its parts are evaluated as themselves.

Choose `watch=True` only for an objective every run of its models should be scored on (the curriculum's: `clm`,
`copy`, `blank_copy`): each evaluated objective costs a pass over the held-out rows at every evaluation.

`--objective retrieval` and `TrainJob(objective="retrieval")` then train with it, and its held-out metrics appear
as `eval_retrieval_loss`, `eval_retrieval_accuracy`, ... in `metrics.json`. Only a new loss *stream* (rows weighed
apart from `clm` and `copy`) touches the model: a `<stream>_loss_weight` config field and an entry in
`modeling_memory/memory_loss.py`'s `LOSS_STREAMS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NEEDS = ("causal", "memory", "autoencoder")
EVALUATION_ROWS = ("all", "full_length")


@dataclass(frozen=True)
class Objective:
    """One training objective.

    Args:
        name (`str`): what `--objective` takes; its eval set's metrics are `eval_<name>_loss`, `_accuracy`, ...
        build_batch (`Callable` or `None`): `(input_ids, attention_mask, *, labels, settings, pad_token_id) ->
            dict`, pure (the inputs are never modified); see the module doc. `None` exactly for a mixture.
        streams (`tuple[str, ...]`, defaults to `("clm",)`): the loss streams (`modeling_memory.LOSS_STREAMS`)
            its rows feed, each weighed by the model config's `<stream>_loss_weight`; empty for an autoencoder.
        needs (`str`, defaults to `"causal"`): the model it trains: `"causal"` (any causal LM), `"memory"` (a
            causal LM whose targets come from memories: evaluated on memory models only, and a plain causal LM
            loaded with `--init-from` is refused) or `"autoencoder"`.
        evaluation (`str`, *optional*, defaults to `"all"`): the held-out rows of its eval set: `"all"`, or
            `"full_length"` (rows without padding, as the paper scores copy); `None`: no eval set of its own
            (`combined`, whose parts are evaluated as `clm` and `copy`).
        watch (`bool`, defaults to `False`): evaluate it in every run whose model it fits, whichever objective
            trains (the curriculum's objectives are watched throughout); otherwise only in the runs that train it.
        shifted (`bool`, defaults to `True`): the target at position `p` is predicted from `p - 1` (causal), or
            at `p` itself (`False`: an autoencoder's reconstruction). The token accuracy follows it, and so does
            the number of tokens a training row needs to give a target (2, or 1).
        rows (`Callable`, *optional*): `(texts, tokenizer, config, *, context, pack, seed) -> datasets.Dataset`,
            its training and held-out rows made from a split of the corpus (see the module doc); `None`: the
            documents cut into rows of `context` tokens (`training.data.corpora.tokenize_corpus`).
        parts (`tuple[str, ...]`, defaults to `()`): a mixture's registered objectives (see the module doc).
    """

    name: str
    build_batch: Callable[..., dict] | None
    streams: tuple[str, ...] = ("clm",)
    needs: str = "causal"
    evaluation: str | None = "all"
    watch: bool = False
    shifted: bool = True
    rows: Callable[..., Any] | None = None
    parts: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"an objective's name must be an identifier (it names metrics), got {self.name!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"objective {self.name!r}: `needs` must be one of {NEEDS}, got {self.needs!r}")
        if self.evaluation is not None and self.evaluation not in EVALUATION_ROWS:
            raise ValueError(f"objective {self.name!r}: `evaluation` must be one of {EVALUATION_ROWS} or None, got "
                             f"{self.evaluation!r}")
        if (self.build_batch is None) != bool(self.parts) or (self.parts and (self.rows or self.evaluation)):
            raise ValueError(f"objective {self.name!r}: a mixture has `parts` and neither a builder, rows nor an eval "
                             f"set of its own; any other objective has a builder and no parts (got parts={self.parts})")


# name -> "module:attribute" of its record: the registration of each objective of the package (one line each).
BUILTIN = {
    "clm": "memory_models.training.objectives.causal:CLM",
    "copy": "memory_models.training.objectives.copy:COPY",
    "blank_copy": "memory_models.training.objectives.copy:BLANK_COPY",
    "copy_and_blank_copy": "memory_models.training.objectives.copy:COPY_AND_BLANK_COPY",
    "combined": "memory_models.training.objectives.combined:COMBINED",
    "combined_blank": "memory_models.training.objectives.combined:COMBINED_BLANK",
    "autoencode": "memory_models.training.objectives.autoencode:AUTOENCODE",
    "retrieval": "memory_models.training.objectives.retrieval:RETRIEVAL",
    "combined_retrieval": "memory_models.training.objectives.retrieval:COMBINED_RETRIEVAL",
}
_registered: dict[str, Objective] = {}  # records registered at run time (`register_objective`)
_loaded: dict[str, Objective] = {}  # BUILTIN records already imported


def objective_names() -> tuple[str, ...]:
    """Every registered objective's name: the package's, then those registered at run time."""
    return (*BUILTIN, *_registered)


def get_objective(name: str) -> Objective:
    """The record registered as `name`; an unknown name is a `ValueError` listing the registered ones."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise ValueError(f"unknown objective {name!r}; registered: {', '.join(objective_names())}")
    if name not in _loaded:
        module, attribute = BUILTIN[name].split(":")
        record = getattr(importlib.import_module(module), attribute)
        if record.name != name:
            raise ValueError(f"BUILTIN[{name!r}] points at the record of {record.name!r}")
        _loaded[name] = record
    return _loaded[name]


def objective_parts(name: str) -> tuple[Objective, ...]:
    """The records whose builders make the batches of `name`: itself, or a mixture's parts (which must be plain
    objectives of one kind: the same `needs` and `shifted` as the mixture); a bad mixture is a `ValueError`."""
    record = get_objective(name)
    if not record.parts:
        return (record,)
    parts = tuple(get_objective(part) for part in record.parts)
    for part in parts:
        if part.parts or part.needs != record.needs or part.shifted != record.shifted:
            raise ValueError(f"mixture {name!r}: part {part.name!r} must be a plain objective with needs="
                             f"{record.needs!r} and shifted={record.shifted}")
    return parts


def all_objectives() -> list[Objective]:
    """Every registered record, in `objective_names()` order (the order of a run's eval sets)."""
    return [get_objective(name) for name in objective_names()]


def register_objective(objective: Objective) -> Objective:
    """Register a record made outside the package (before building a job that names it); returns it."""
    if not isinstance(objective, Objective):
        raise ValueError(f"register an `Objective` record, got {type(objective).__name__}")
    if objective.name in objective_names():
        raise ValueError(f"objective {objective.name!r} is already registered")
    _registered[objective.name] = objective
    return objective
