"""Tests of the training objectives (paper §5): exact positions on small hand-written batches, and the registry."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from memory_models.modeling_memory import IGNORE_INDEX, LOSS_STREAMS
from memory_models.training import objectives
from memory_models.training.objectives import (
    Objective, all_objectives, get_objective, objective_parts, register_objective,
)
from memory_models.training.objectives.batch import CopySettings, ObjectiveCollator, build_objective_batch
from memory_models.training.objectives.causal import causal_batch
from memory_models.training.objectives.combined import combined_batch
from memory_models.training.objectives.copy import copy_batch
from memory_models.training.trainer import RoutingCollator

IGNORE = -100
DELIM = 3
BLANK = 1


def _row(*values):
    return torch.tensor([values], dtype=torch.long)


@pytest.fixture
def tokens():
    """One full-length row of n=12 tokens 10..21."""
    return torch.arange(10, 22).unsqueeze(0)


@pytest.fixture
def padded():
    """Two right-padded rows of n=12: 5 and 8 real tokens, pad id 1."""
    ids = torch.ones(2, 12, dtype=torch.long)
    ids[0, :5] = torch.arange(10, 15)
    ids[1, :8] = torch.arange(30, 38)
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0, :5] = 1
    mask[1, :8] = 1
    return ids, mask


def test_causal_labels_mask_pads(padded):
    """Causal labels equal the inputs, with -100 exactly where the attention mask is 0."""
    ids, mask = padded
    batch = causal_batch(ids, mask)
    torch.testing.assert_close(batch["labels"], ids.masked_fill(mask == 0, IGNORE))
    assert torch.equal(batch["stream_ids"], torch.zeros(2, dtype=torch.long))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "stream_ids"}


def test_causal_mask_rules():
    """Without a mask, it is built from pad_token_id when given, else all ones."""
    ids = _row(5, 6, 1, 1)
    assert torch.equal(causal_batch(ids, pad_token_id=1)["attention_mask"], _row(1, 1, 0, 0))
    assert torch.equal(causal_batch(ids)["attention_mask"], torch.ones_like(ids))
    assert torch.equal(causal_batch(ids)["labels"], ids)


def test_copy_with_delimiter_exact_layout(tokens):
    """Copy input, labels and mask match the paper's layout for n=12 and a 3-token delimiter."""
    batch = copy_batch(tokens, settings=CopySettings(delimiter_token_id=DELIM, delimiter_length=3))
    expected_ids = _row(10, 11, 12, 13, 14, 15, DELIM, DELIM, DELIM, 13, 14, 15)
    # Positions 6 and 7 (targets 10, 11) are hidden; x_2 = 12 is the label at 8, predicted from position 7.
    expected_labels = _row(*[IGNORE] * 8, 12, 13, 14, 15)
    assert torch.equal(batch["input_ids"], expected_ids)
    assert torch.equal(batch["labels"], expected_labels)
    assert torch.equal(batch["attention_mask"], torch.ones_like(tokens))
    assert torch.equal(batch["stream_ids"], torch.ones(1, dtype=torch.long))


def test_copy_without_delimiter(tokens):
    """delimiter_token_id=None: no overwrite and no extra label masking."""
    batch = copy_batch(tokens, settings=CopySettings(delimiter_token_id=None))
    assert torch.equal(batch["input_ids"], _row(10, 11, 12, 13, 14, 15, 10, 11, 12, 13, 14, 15))
    assert torch.equal(batch["labels"], _row(*[IGNORE] * 6, 10, 11, 12, 13, 14, 15))


def test_blank_copy_exact_layout(tokens):
    """Blank copy: the second half is blank tokens except the delimiters; labels as for copy."""
    settings = CopySettings(blank=True, blank_token_id=BLANK, delimiter_token_id=DELIM, delimiter_length=3)
    batch = copy_batch(tokens, settings=settings)
    assert torch.equal(batch["input_ids"], _row(10, 11, 12, 13, 14, 15, DELIM, DELIM, DELIM, BLANK, BLANK, BLANK))
    assert torch.equal(batch["labels"], _row(*[IGNORE] * 8, 12, 13, 14, 15))
    no_delim = copy_batch(tokens, settings=CopySettings(blank=True, blank_token_id=7, delimiter_token_id=None))
    assert torch.equal(no_delim["input_ids"][:, 6:], torch.full((1, 6), 7))


def test_copy_delimiter_length_one(tokens):
    """A 1-token delimiter hides no target: x_0 is the label at the delimiter position."""
    batch = copy_batch(tokens, settings=CopySettings(delimiter_token_id=DELIM, delimiter_length=1))
    assert torch.equal(batch["input_ids"], _row(10, 11, 12, 13, 14, 15, DELIM, 11, 12, 13, 14, 15))
    assert torch.equal(batch["labels"], _row(*[IGNORE] * 6, 10, 11, 12, 13, 14, 15))


def test_copy_right_padded_rows(padded):
    """The copied half carries the first half's padding pattern; pad targets stay -100."""
    ids, mask = padded
    batch = copy_batch(ids, mask, settings=CopySettings(delimiter_token_id=DELIM, delimiter_length=3))
    expected_ids = torch.tensor(
        [
            [10, 11, 12, 13, 14, 1, DELIM, DELIM, DELIM, 13, 14, 1],
            [30, 31, 32, 33, 34, 35, DELIM, DELIM, DELIM, 33, 34, 35],
        ]
    )
    expected_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0], [1] * 12])
    expected_labels = torch.tensor([[IGNORE] * 8 + [12, 13, 14, IGNORE], [IGNORE] * 8 + [32, 33, 34, 35]])
    assert torch.equal(batch["input_ids"], expected_ids)
    assert torch.equal(batch["attention_mask"], expected_mask)
    assert torch.equal(batch["labels"], expected_labels)


def test_copy_uses_given_labels(tokens):
    """Explicit labels (e.g. a collator's) provide the copy targets."""
    labels = tokens.clone()
    labels[0, 3] = IGNORE
    batch = copy_batch(tokens, labels=labels, settings=CopySettings(delimiter_token_id=None))
    assert torch.equal(batch["labels"], _row(*[IGNORE] * 6, 10, 11, 12, IGNORE, 14, 15))


def test_combined_batch(padded):
    """Combined: a 2b batch whose first half is the causal batch and second half the copy batch."""
    ids, mask = padded
    settings = CopySettings(delimiter_token_id=DELIM, delimiter_length=3)
    batch = combined_batch(ids, mask, settings=settings)
    causal, copy = causal_batch(ids, mask), copy_batch(ids, mask, settings=settings)
    assert batch["input_ids"].shape == (4, 12)
    assert torch.equal(batch["stream_ids"], torch.tensor([0, 0, 1, 1]))
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(batch[key][:2], causal[key])
        assert torch.equal(batch[key][2:], copy[key])
    blank = combined_batch(ids, mask, settings=replace(settings, blank=True, blank_token_id=BLANK))
    assert torch.equal(blank["input_ids"][2:, 9:], torch.ones(2, 3, dtype=torch.long))


def test_combined_blank_is_combined_with_blank_copy_rows(padded):
    """The registered `combined_blank`: the causal rows of `combined`, then the blank-copy rows (the settings'
    `blank` is forced on, whatever the model's settings say)."""
    ids, mask = padded
    settings = CopySettings(delimiter_token_id=DELIM, delimiter_length=3, blank_token_id=BLANK)
    record = get_objective("combined_blank")
    assert record.streams == ("clm", "copy") and record.needs == "memory" and record.evaluation is None
    batch = record.build_batch(ids, mask, labels=None, settings=settings, pad_token_id=1)
    expected = combined_batch(ids, mask, settings=replace(settings, blank=True))
    for key in ("input_ids", "attention_mask", "labels", "stream_ids"):
        assert torch.equal(batch[key], expected[key])
    assert not torch.equal(batch["input_ids"], combined_batch(ids, mask, settings=settings)["input_ids"])


def test_inputs_not_mutated(padded):
    """No builder modifies its input tensors."""
    ids, mask = padded
    labels = ids.masked_fill(mask == 0, IGNORE)
    originals = (ids.clone(), mask.clone(), labels.clone())
    copy_batch(ids, mask, labels, settings=CopySettings(delimiter_token_id=DELIM))
    copy_batch(ids, mask, labels, settings=CopySettings(blank=True, delimiter_token_id=DELIM))
    combined_batch(ids, mask, labels, settings=CopySettings(delimiter_token_id=DELIM))
    causal_batch(ids, mask)
    for before, after in zip(originals, (ids, mask, labels)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("length", [11, 7])
def test_odd_length_raises(length):
    """An odd sequence length is rejected with a ValueError naming n."""
    with pytest.raises(ValueError, match=f"n={length}"):
        copy_batch(torch.zeros(2, length, dtype=torch.long))


def test_bad_inputs_raise(tokens):
    """Too-long delimiters, mismatched shapes and 1-D inputs raise ValueError."""
    with pytest.raises(ValueError, match="delimiter_length=6"):
        copy_batch(tokens, settings=CopySettings(delimiter_token_id=DELIM, delimiter_length=6))
    with pytest.raises(ValueError, match="attention_mask"):
        copy_batch(tokens, torch.ones(1, 10))
    with pytest.raises(ValueError, match="labels"):
        combined_batch(tokens, labels=torch.ones(2, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D"):
        causal_batch(tokens[0])


def test_build_objective_batch_dispatch(padded):
    """Each objective name dispatches to its builder; unknown names list the choices."""
    ids, mask = padded
    kwargs = {"settings": CopySettings(delimiter_token_id=DELIM, delimiter_length=3), "pad_token_id": 1}
    assert torch.equal(build_objective_batch("clm", ids, mask, **kwargs)["labels"], causal_batch(ids, mask)["labels"])
    blank = build_objective_batch("blank_copy", ids, mask, **kwargs)
    assert torch.equal(blank["input_ids"], copy_batch(ids, mask, settings=CopySettings(blank=True, delimiter_token_id=DELIM))["input_ids"])
    assert build_objective_batch("combined", ids, mask, **kwargs)["input_ids"].shape == (4, 12)
    autoencode = build_objective_batch("autoencode", ids, mask, **kwargs)
    assert set(autoencode) == {"input_ids", "attention_mask", "labels"}
    assert torch.equal(autoencode["labels"], causal_batch(ids, mask)["labels"])
    with pytest.raises(ValueError, match="unknown objective 'mlm'; registered: clm, copy, blank_copy, "
                                         "copy_and_blank_copy, combined, "
                                         "combined_blank, autoencode, retrieval, combined_retrieval"):
        build_objective_batch("mlm", ids, mask, **kwargs)


def test_every_objective_tags_exactly_the_loss_streams_it_declares(padded):
    """Each registered objective's batch carries `stream_ids` of its declared streams (all of them), or none when
    it declares none; the model weighs stream `LOSS_STREAMS[i]` by `<name>_loss_weight`."""
    ids, mask = padded
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)  # rows with their own targets (retrieval needs them)
    for objective in all_objectives():
        if objective.parts:  # a mixture: its parts build its batches
            assert set(objective.streams) == {s for part in objective_parts(objective.name) for s in part.streams}
            continue
        batch = objective.build_batch(ids, mask, labels=labels, settings=CopySettings(delimiter_token_id=DELIM),
                                      pad_token_id=1)
        tags = batch.get("stream_ids")
        found = () if tags is None else tuple(LOSS_STREAMS[i] for i in sorted(set(tags.tolist())))
        assert found == objective.streams, objective.name


def test_a_batch_outside_its_declared_streams_is_refused(padded, monkeypatch):
    """A builder that tags rows with a stream its record does not declare (or declares streams and tags none) is
    refused when its batch is built, naming the objective."""
    monkeypatch.setattr(objectives, "_registered", {})
    register_objective(Objective("mislabelled", copy_batch, streams=("clm",)))
    register_objective(Objective("untagged", lambda ids, mask, **_: {"input_ids": ids}, streams=("clm",)))
    ids, mask = padded
    with pytest.raises(ValueError, match=r"'mislabelled' tags rows with loss streams \['copy'\]"):
        build_objective_batch("mislabelled", ids, mask)
    with pytest.raises(ValueError, match="'untagged' declares loss streams"):
        build_objective_batch("untagged", ids, mask)


def test_registering_checks_the_record(monkeypatch):
    """A record needs a known model kind and eval rows; a name is registered once; the BUILTIN records load lazily
    and are the objects of their modules."""
    monkeypatch.setattr(objectives, "_registered", {})
    with pytest.raises(ValueError, match="`needs` must be one of"):
        Objective("toy", causal_batch, needs="encoder")
    with pytest.raises(ValueError, match="`evaluation` must be one of"):
        Objective("toy", causal_batch, evaluation="some")
    with pytest.raises(ValueError, match="already registered"):
        register_objective(Objective("copy", copy_batch))
    from memory_models.training.objectives import copy as copy_module

    assert get_objective("blank_copy") is copy_module.BLANK_COPY and get_objective("blank_copy").needs == "memory"


def test_collator_right_padding_and_truncation():
    """The collator right-pads to the longest row, or pads/truncates to max_length."""
    features = [{"input_ids": [5, 6, 7]}, {"input_ids": torch.tensor([8, 9, 10, 11, 12])}]
    batch = ObjectiveCollator("clm", pad_token_id=1)(features)
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7, 1, 1], [8, 9, 10, 11, 12]]))
    assert torch.equal(batch["labels"], torch.tensor([[5, 6, 7, IGNORE, IGNORE], [8, 9, 10, 11, 12]]))
    batch = ObjectiveCollator("clm", pad_token_id=1, max_length=4)(features)
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7, 1], [8, 9, 10, 11]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    batch = ObjectiveCollator("clm", pad_token_id=1, max_length=6)(features[:1])
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7, 1, 1, 1]]))


def test_collator_left_padding_and_given_mask():
    """Left padding puts pads first; a feature's own attention mask is kept (pad == eos rows)."""
    features = [{"input_ids": [5, 1], "attention_mask": [1, 1]}, {"input_ids": [8, 9, 10, 11]}]
    batch = ObjectiveCollator("autoencode", pad_token_id=1, padding_side="left")(features)
    assert torch.equal(batch["input_ids"], torch.tensor([[1, 1, 5, 1], [8, 9, 10, 11]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]))
    assert torch.equal(batch["labels"], torch.tensor([[IGNORE, IGNORE, 5, 1], [8, 9, 10, 11]]))


def test_collator_copy_objective():
    """The collator builds the copy batch of the padded rows."""
    collator = ObjectiveCollator("copy", pad_token_id=1, copy=CopySettings(delimiter_token_id=DELIM, delimiter_length=1),
                                 max_length=6)
    batch = collator([{"input_ids": [10, 11, 12, 13]}])
    assert torch.equal(batch["input_ids"], _row(10, 11, 12, DELIM, 11, 12))
    assert torch.equal(batch["labels"], _row(IGNORE, IGNORE, IGNORE, 10, 11, 12))


def test_collator_uses_the_rows_own_labels():
    """Rows that carry their own `labels` (e.g. answer-only targets) keep them, padded with -100, in every
    objective's batch (copy repeats them in the copied half); rows without them get the causal labels."""
    features = [{"input_ids": [5, 6, 7, 8], "labels": [IGNORE, IGNORE, 7, 8]}, {"input_ids": [9, 10]}]
    features[1]["labels"] = [9, IGNORE]
    batch = ObjectiveCollator("clm", pad_token_id=1, max_length=6)(features)
    assert torch.equal(batch["labels"], torch.tensor([[IGNORE, IGNORE, 7, 8, IGNORE, IGNORE],
                                                      [9, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE]]))
    copy = ObjectiveCollator("copy", pad_token_id=1, max_length=8)(features[:1])
    assert torch.equal(copy["labels"], _row(IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 7, 8))
    plain = ObjectiveCollator("clm", pad_token_id=1, max_length=4)([{"input_ids": [5, 6, 7]}])
    assert torch.equal(plain["labels"], _row(5, 6, 7, IGNORE))


def test_collator_validation():
    """Unknown objectives, padding sides and empty batches raise ValueError."""
    with pytest.raises(ValueError, match="objective"):
        ObjectiveCollator("nope", pad_token_id=1)
    with pytest.raises(ValueError, match="middle"):
        ObjectiveCollator("clm", pad_token_id=1, padding_side="middle")
    with pytest.raises(ValueError, match="empty"):
        ObjectiveCollator("clm", pad_token_id=1)([])


def test_collator_from_config():
    """from_config reads the special-token fields of a model config, with defaults and overrides."""
    config = SimpleNamespace(pad_token_id=2, blank_token_id=4, copy_delimiter_token_id=100, copy_delimiter_length=2)
    collator = ObjectiveCollator.from_config("blank_copy", config, max_length=8)
    assert (collator.pad_token_id, collator.max_length) == (2, 8)
    assert collator.copy == CopySettings(blank_token_id=4, delimiter_token_id=100, delimiter_length=2)
    defaults = ObjectiveCollator.from_config("copy", SimpleNamespace())
    assert (defaults.pad_token_id, defaults.copy) == (1, CopySettings(blank_token_id=1, delimiter_token_id=None))
    assert ObjectiveCollator.from_config("copy", SimpleNamespace(pad_token_id=5)).copy.blank_token_id == 5


def test_retrieval_batch_keeps_the_rows_answer_only_labels(padded):
    """A retrieval batch is its rows as they are, with their own labels (padding ignored) and every row tagged
    with the `retrieval` stream; rows without labels are refused (every token would become a target)."""
    ids, mask = padded
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 2] = ids[:, 2]  # one answer token per row
    labels[1, -1] = 5  # a label under padding is dropped
    batch = build_objective_batch("retrieval", ids, mask, labels=labels, pad_token_id=1)
    torch.testing.assert_close(batch["input_ids"], ids)
    expected = labels.clone()
    expected[1, -1] = IGNORE_INDEX
    torch.testing.assert_close(batch["labels"], expected)
    assert batch["stream_ids"].tolist() == [LOSS_STREAMS.index("retrieval")] * ids.shape[0]
    with pytest.raises(ValueError, match="answer-only `labels`"):
        build_objective_batch("retrieval", ids, mask, pad_token_id=1)


def test_a_mixture_names_plain_parts_of_its_kind(monkeypatch):
    """A mixture has parts and no builder, rows or eval set of its own; its parts are plain objectives of its
    `needs` (`combined_retrieval`: combined and retrieval)."""
    assert [part.name for part in objective_parts("combined_retrieval")] == ["combined", "retrieval"]
    assert objective_parts("copy") == (get_objective("copy"),)
    with pytest.raises(ValueError, match="a mixture has `parts`"):
        Objective("toy", None)
    with pytest.raises(ValueError, match="a mixture has `parts`"):
        Objective("toy", causal_batch, parts=("clm",))
    monkeypatch.setattr(objectives, "_registered", {})
    register_objective(Objective("odd_mix", None, needs="memory", evaluation=None, parts=("clm", "copy")))
    with pytest.raises(ValueError, match="part 'clm' must be a plain objective with needs='memory'"):
        objective_parts("odd_mix")


def test_the_routing_collator_builds_each_row_with_its_own_objective():
    """Rows tagged with different objectives in one batch: each group is built by its objective's collator and
    the groups are stacked (a combined row gives a causal and a copy row; a retrieval row stays one row)."""
    plain = {"input_ids": [5, 6, 7, 8, 9, 10], "objective": "combined"}
    asked = {"input_ids": [11, 12, 13, 14], "labels": [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 14],
             "objective": "retrieval"}
    collators = {name: ObjectiveCollator(name, pad_token_id=1, max_length=8) for name in ("combined", "retrieval")}
    batch = RoutingCollator(collators, "combined")([plain, asked, plain])
    combined = collators["combined"]([plain, plain])
    retrieval = collators["retrieval"]([asked])
    for key in ("input_ids", "attention_mask", "labels", "stream_ids"):
        torch.testing.assert_close(batch[key], torch.cat([combined[key], retrieval[key]]))
    with pytest.raises(ValueError, match=r"rows ask for objective\(s\) \['copy'\]"):
        RoutingCollator(collators, "combined")([{**plain, "objective": "copy"}])
    short = {**collators, "retrieval": ObjectiveCollator("retrieval", pad_token_id=1, max_length=6)}
    with pytest.raises(ValueError, match="cannot be stacked"):
        RoutingCollator(short, "combined")([plain, asked])


def test_copy_and_blank_copy_trains_the_same_copy_with_and_without_the_tokens():
    """`copy_and_blank_copy` mixes blank-copy and copy rows: from one corpus row, the blank row hides the copied half
    behind blanks and the copy row shows it; both have the same targets, in the copy stream."""
    assert [part.name for part in objective_parts("copy_and_blank_copy")] == ["blank_copy", "copy"]
    assert get_objective("copy_and_blank_copy").streams == ("copy",)
    settings = CopySettings(delimiter_token_id=DELIM, delimiter_length=1)
    collators = {name: ObjectiveCollator(name, pad_token_id=1, max_length=8, copy=settings)
                 for name in ("blank_copy", "copy")}
    row = [5, 6, 7, 8, 9, 10, 11, 12]
    batch = RoutingCollator(collators, "copy")([{"input_ids": row, "objective": "blank_copy"},
                                                {"input_ids": row, "objective": "copy"}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, DELIM, 1, 1, 1], [5, 6, 7, 8, DELIM, 6, 7, 8]]
    torch.testing.assert_close(batch["labels"][0], batch["labels"][1])
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 4 + [5, 6, 7, 8]  # the copy of tokens 5 .. 8
    assert batch["stream_ids"].tolist() == [LOSS_STREAMS.index("copy")] * 2
