"""Loss scaling under gradient accumulation and DDP: every family normalises its loss by the step's target
count (`num_items_in_batch`), so the sum of the micro-batch losses is the full batch's loss, gradients included.

The count is the one the Trainer really computes (`MemoryTrainer._get_num_items_in_batch`): per loss group for
the memory model (causal and copy streams; chunks under `paper` reduction), the Trainer's own otherwise.
The end-to-end runs (1 vs 2 processes, accumulation 1 vs 2) are in `test_distributed.py`.
"""

import pytest
import torch
from transformers import TrainingArguments

from memory_models.configuration import build_model, get_preset
from memory_models.training.objectives.batch import CopySettings, build_objective_batch
from memory_models.training.trainer import MemoryTrainer

PAD = 1


def _batch(preset: str, objective: str, length: int) -> dict:
    """4 rows with different amounts of right and left padding (so micro-batches hold unequal target counts)."""
    torch.manual_seed(0)
    ids = torch.randint(4, 99, (4, length))
    mask = torch.ones_like(ids)
    mask[1, -5:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    mask[3, length // 2 + 1 :] = 0
    if preset.startswith("memory-") and objective != "clm":
        batch = build_objective_batch(objective, ids, mask, pad_token_id=PAD, settings=CopySettings(blank_token_id=PAD, delimiter_token_id=3))
    else:
        batch = build_objective_batch(objective, ids.masked_fill(mask == 0, PAD), mask, pad_token_id=PAD)
    if not preset.startswith("memory-"):
        batch.pop("stream_ids", None)
    return batch


def _trainer(model, tmp_path) -> MemoryTrainer:
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    return MemoryTrainer(model=model, args=args, vocab_size=model.config.vocab_size)


def _loss_and_grads(model, batches, num_items_in_batch):
    model.zero_grad()
    total = 0.0
    for batch in batches:
        loss = model(**batch, num_items_in_batch=num_items_in_batch).loss
        loss.backward()
        total = total + loss.detach()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return total, grads


CASES = [
    ("memory-transformer-tiny", "combined", {}),
    ("memory-transformer-tiny", "combined", {"loss_reduction": "paper", "copy_loss_weight": 0.5}),
    ("memory-transformer-tiny", "copy", {"paper_chunk_targets": True}),
    ("memory-mixer-tiny", "clm", {}),
    ("masked-mixer-tiny", "clm", {}),
    ("transformer-clm-tiny", "clm", {}),
    ("recurrent-memory-tiny", "clm", {}),
    ("autoencoder-tiny", "autoencode", {}),
]


@pytest.mark.parametrize("preset, objective, overrides", CASES)
def test_micro_batches_add_up_to_the_full_batch(tmp_path, preset, objective, overrides):
    """Split 1 + 3 rows with the Trainer's step count as `num_items_in_batch`: the micro-batch losses add up
    to the full batch's loss (its plain token mean, per stream) and the accumulated gradients are the same."""
    torch.manual_seed(0)
    model = build_model(get_preset(preset, **overrides)).train()
    length = 16 if preset.startswith(("autoencoder", "memory")) else 12
    full = _batch(preset, objective, length)
    parts = [{k: v[:1] for k, v in full.items()}, {k: v[1:] for k, v in full.items()}]
    if objective == "combined":  # rows 0-3 causal, 4-7 copy: split 3 + 5 rows across both streams
        parts = [{k: v[:3] for k, v in full.items()}, {k: v[3:] for k, v in full.items()}]
    trainer = _trainer(model, tmp_path)
    assert trainer.model_accepts_loss_kwargs
    count = trainer._get_num_items_in_batch(parts, torch.device("cpu"))
    expected, expected_grads = _loss_and_grads(model, [full], None)
    got, grads = _loss_and_grads(model, parts, count)
    torch.testing.assert_close(got, expected)
    assert expected_grads.keys() == grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], msg=name)
    once, _ = _loss_and_grads(model, [full], trainer._get_num_items_in_batch([full], torch.device("cpu")))
    torch.testing.assert_close(once, expected)  # the count of a single batch changes nothing


def test_stream_losses_are_the_unweighted_parts_of_the_loss():
    """Combined objective: `loss = clm_loss_weight * stream_losses[0] + copy_loss_weight * stream_losses[1]`,
    and each part is the stream's own loss (the same rows run as a plain clm or copy batch); the retrieval stream,
    without rows here, is 0."""
    model = build_model(get_preset("memory-transformer-tiny", copy_loss_weight=0.5)).eval()
    batch = _batch("memory-transformer-tiny", "combined", 16)
    out = model(**batch)
    torch.testing.assert_close(out.loss, out.stream_losses[0] + 0.5 * out.stream_losses[1])
    clm = model(**{k: v[:4] for k, v in batch.items()})
    copy = model(**{k: v[4:] for k, v in batch.items()})
    torch.testing.assert_close(out.stream_losses, torch.stack([clm.loss, copy.loss / 0.5, torch.zeros(())]))


def test_bad_num_items_in_batch_raises():
    """A count tensor that fits neither one group nor all groups is a ValueError naming the shapes."""
    model = build_model(get_preset("memory-transformer-tiny"))
    batch = _batch("memory-transformer-tiny", "combined", 16)
    with pytest.raises(ValueError, match=r"one count per loss group \(3\), got shape \(4,\)"):
        model(**batch, num_items_in_batch=torch.tensor([5, 5, 5, 5]))
    mixer = build_model(get_preset("masked-mixer-tiny"))
    with pytest.raises(ValueError, match=r"single count for this model, got shape \(2,\)"):
        mixer(**_batch("masked-mixer-tiny", "clm", 12), num_items_in_batch=torch.tensor([5, 5]))
