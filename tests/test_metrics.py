"""Metric functions against hand-computed values (spec §6)."""

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from memory_models.training.metrics import (
    PAPER_8K_DENOMINATOR,
    StreamingMetrics,
    entropy_ratio,
    make_compute_metrics,
    preprocess_logits_for_metrics,
    token_accuracy,
)


def one_hot_logits(ids, vocab=5, scale=10.0):
    """Logits `[b, t, V]` whose argmax is `ids`."""
    return torch.nn.functional.one_hot(torch.as_tensor(ids), vocab).float() * scale


# predictions (argmax) and labels with -100s:
#   row 0: pred [1, 2, 3, 4]   labels [1, 2, 0, -100]
#   row 1: pred [0, 0, 2, 2]   labels [-100, 0, 2, 3]
PRED = [[1, 2, 3, 4], [0, 0, 2, 2]]
LABELS = torch.tensor([[1, 2, 0, -100], [-100, 0, 2, 3]])


def test_entropy_ratio_values():
    """CE = ln 2 gives 1 - ln2/lnV; the paper's 8k constant 9.03 is an option; 0 CE gives 1."""
    assert entropy_ratio(math.log(2), vocab_size=16) == pytest.approx(1 - math.log(2) / math.log(16))
    assert entropy_ratio(math.log(2), vocab_size=2) == pytest.approx(0.0)
    assert entropy_ratio(5.937, denominator=PAPER_8K_DENOMINATOR) == pytest.approx(0.343, abs=5e-4)
    assert entropy_ratio(0.0, vocab_size=8000) == 1.0
    torch.testing.assert_close(entropy_ratio(torch.tensor([0.0, math.log(4)]), vocab_size=4), torch.tensor([1.0, 0.0]))


def test_entropy_ratio_needs_one_denominator():
    """Neither (or both) of vocab_size / denominator is a ValueError naming the values."""
    with pytest.raises(ValueError, match="vocab_size=None, denominator=None"):
        entropy_ratio(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        entropy_ratio(1.0, vocab_size=10, denominator=9.03)


def test_token_accuracy_unshifted():
    """Unshifted: row 0 hits 2 of 3 targets, row 1 hits 2 of 3 -> 4/6 (micro average)."""
    assert token_accuracy(one_hot_logits(PRED), LABELS, shift=False) == pytest.approx(4 / 6)


def test_token_accuracy_shifted():
    """Shifted, pred[:, :-1] vs labels[:, 1:]: row 0 (1|2, 2|0, skip) 0/2, row 1 (0|0, 0|2, 2|3) 1/3 -> 1/5."""
    assert token_accuracy(one_hot_logits(PRED), LABELS, shift=True) == pytest.approx(1 / 5)


def test_token_accuracy_paper_layout_and_ids():
    """The paper's `[b, V, t]` logits (vocab_dim=1) and plain predicted ids give the same accuracy."""
    logits = one_hot_logits(PRED)
    for shift in (False, True):
        expected = token_accuracy(logits, LABELS, shift=shift)
        assert token_accuracy(logits.transpose(1, 2), LABELS, shift=shift, vocab_dim=1) == expected
        assert token_accuracy(torch.tensor(PRED), LABELS, shift=shift) == expected


def test_token_accuracy_no_targets_and_bad_shapes():
    """No valid target gives NaN; mismatched shapes raise ValueError."""
    assert math.isnan(token_accuracy(one_hot_logits(PRED), torch.full((2, 4), -100), shift=False))
    with pytest.raises(ValueError, match="do not fit"):
        token_accuracy(one_hot_logits(PRED), LABELS[:, :3], shift=False)


def test_exclude_chunk_boundaries():
    """With chunk size 2 and shift, targets at token indices 2 (the start of chunk 1) are dropped."""
    labels = torch.tensor([[1, 2, 3, 4]])
    pred = torch.tensor([[2, 0, 4, 0]])  # predicts tokens 1 and 3 right, token 2 wrong
    assert token_accuracy(pred, labels, shift=True) == pytest.approx(2 / 3)
    assert token_accuracy(pred, labels, shift=True, exclude_chunk_boundaries=2) == pytest.approx(1.0)


def test_streaming_equals_one_shot():
    """Accumulating over row chunks gives the one-shot CE, H_r and accuracy."""
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 9, 11), torch.randint(0, 11, (7, 9))
    labels[labels == 3] = -100
    for shift in (False, True):
        metrics = StreamingMetrics(shift=shift, vocab_size=11)
        for start in range(0, 7, 3):
            metrics.update(logits[start : start + 3], labels[start : start + 3])
        result = metrics.compute()
        kept_logits, kept_labels = (logits[:, :-1], labels[:, 1:]) if shift else (logits, labels)
        ce = torch.nn.functional.cross_entropy(kept_logits.flatten(0, 1), kept_labels.flatten(), ignore_index=-100)
        assert result["loss"] == pytest.approx(ce.item(), rel=1e-5)
        assert result["entropy_ratio"] == pytest.approx(1 - ce.item() / math.log(11), rel=1e-5)
        assert result["accuracy"] == pytest.approx(token_accuracy(logits, labels, shift=shift))
        assert result["targets"] == int((kept_labels != -100).sum())


def test_streaming_hand_computed_loss():
    """Uniform logits over 2 of 4 classes that include the target give CE = ln 2 exactly."""
    logits = torch.tensor([[[0.0, 0.0, -1e9, -1e9], [-1e9, 0.0, 0.0, -1e9]]])
    metrics = StreamingMetrics(shift=False, vocab_size=4)
    metrics.update(logits, torch.tensor([[1, 2]]))
    result = metrics.compute()
    assert result["loss"] == pytest.approx(math.log(2))
    assert result["entropy_ratio"] == pytest.approx(0.5)


def test_streaming_ids_only_and_tuple_outputs():
    """Ids update accuracy only (loss NaN); a tuple of model outputs uses its first element."""
    metrics = StreamingMetrics(shift=False)
    metrics.update(torch.tensor(PRED), LABELS)
    metrics.update((one_hot_logits(PRED), torch.zeros(2, 3)), LABELS)
    result = metrics.compute()
    assert result["accuracy"] == pytest.approx(4 / 6) and result["targets"] == 12
    assert result["loss"] >= 0 and math.isnan(result["entropy_ratio"])
    empty = StreamingMetrics().compute()
    assert math.isnan(empty["loss"]) and math.isnan(empty["accuracy"])


def test_trainer_hooks():
    """preprocess_logits_for_metrics returns ids (tuples handled); compute_metrics reports micro accuracy."""
    logits = one_hot_logits(PRED)
    ids = preprocess_logits_for_metrics((logits, torch.zeros(2, 8)), LABELS)
    assert ids.dtype == torch.long and ids.tolist() == PRED
    compute = make_compute_metrics(shift=False, vocab_size=5)
    assert compute(EvalPrediction(predictions=ids.numpy(), label_ids=LABELS.numpy())) == {
        "accuracy": pytest.approx(4 / 6)
    }
    shifted = make_compute_metrics(shift=True, vocab_size=5)(EvalPrediction(ids.numpy(), LABELS.numpy()))
    assert shifted["accuracy"] == pytest.approx(1 / 5)
    with_logits = compute(EvalPrediction(predictions=(logits.numpy(), np.zeros(2)), label_ids=LABELS.numpy()))
    assert set(with_logits) == {"accuracy", "loss", "entropy_ratio"}
    assert with_logits["accuracy"] == pytest.approx(4 / 6)
