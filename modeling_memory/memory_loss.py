"""Losses of the memory model: the shifted causal targets, per-stream and per-chunk reductions, and the target
counts that make a step's loss independent of how its batch is split over micro-batches and processes."""

import torch
import torch.nn.functional as F

from .sequence_ops import IGNORE_INDEX, left_pad_shift, roll_rows

LOSS_BLOCK_ROWS = 1024  # rows of the [targets, vocab] cross-entropy computed at a time
# Loss streams: rows tagged `stream_ids = i` form stream LOSS_STREAMS[i], whose token-mean loss the config's
# `<LOSS_STREAMS[i]>_loss_weight` weighs (the combined objective: causal rows and copy rows; the retrieval
# objective: answers to questions about earlier chunks).
LOSS_STREAMS = ("clm", "copy", "retrieval")


def shifted_targets(labels: torch.LongTensor | None, chunk_size: int, paper_chunk_targets: bool,
                    shift_labels: torch.LongTensor | None = None, token_mask: torch.Tensor | None = None
                    ) -> torch.LongTensor:
    """`targets[:, p] = labels[:, p+1]` (last position: none), or `shift_labels` (already aligned) when given, then
    none at padding positions (`token_mask` 0: as for `labels`, whose rolled padding has no target); paper mode
    drops targets that start a chunk. All `[b, T]`, rolled (each row starting at its first real token)."""
    if shift_labels is None:
        targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    else:
        targets = shift_labels if token_mask is None else shift_labels.masked_fill(~token_mask.bool(), IGNORE_INDEX)
    if paper_chunk_targets:
        starts = (torch.arange(targets.shape[1], device=targets.device) + 1) % chunk_size == 0  # p+1 starts a chunk
        targets = targets.masked_fill(starts[None], IGNORE_INDEX)
    return targets


class MemoryLossMixin:
    """The losses of [`MemoryForCausalLM`] (see `MemoryConfig.loss_reduction`)."""

    def loss_target_counts(self, labels, attention_mask=None, stream_ids=None, shift_labels=None) -> torch.LongTensor:
        """Targets per loss group of a batch (`[groups]`): streams (causal, copy), and chunks under `paper`
        reduction. Summed over a step's micro-batches and processes, they are the `num_items_in_batch` that
        makes the step's loss the same token mean (per group) however the batch is split."""
        reference = labels if shift_labels is None else shift_labels
        mask = torch.ones_like(reference, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        shift = left_pad_shift(mask)
        targets = shifted_targets(roll_rows(labels, shift), self.config.chunk_size, self.config.paper_chunk_targets,
                                  roll_rows(shift_labels, shift), roll_rows(mask, shift))
        group, num_groups, _, _ = self._loss_groups(targets, stream_ids)
        return torch.zeros(num_groups, dtype=torch.long, device=group.device).index_add(0, group, torch.ones_like(group))

    def _loss_groups(self, targets, stream_ids):
        """Group index of every valid target (row-major order), the number of groups, the stream weights and the
        divisor (chunks under `paper` reduction, else 1)."""
        config = self.config
        batch, length = targets.shape
        rows, positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        weights = torch.ones(1, device=targets.device)
        group = torch.zeros_like(rows)
        if stream_ids is not None:
            stream_ids = stream_ids.to(rows.device).long()
            if stream_ids.shape != (batch,) or bool(((stream_ids < 0) | (stream_ids >= len(LOSS_STREAMS))).any()):
                names = ", ".join(f"{i} ({name})" for i, name in enumerate(LOSS_STREAMS))
                raise ValueError(f"stream_ids must be [batch={batch}] with values {names}, got {stream_ids.tolist()}")
            group = stream_ids[rows]
            weights = torch.tensor([getattr(config, f"{name}_loss_weight") for name in LOSS_STREAMS],
                                   device=targets.device)
        divisor = 1
        if config.loss_reduction == "paper":
            divisor = -(-length // config.chunk_size)  # chunks, by prediction position
            group = group * divisor + torch.div(positions, config.chunk_size, rounding_mode="floor")
        return group, weights.numel() * divisor, weights, divisor

    def _loss(self, scores, targets, stream_ids, num_items_in_batch=None, are_logits: bool = True):
        """Loss over valid targets (see `MemoryConfig.loss_reduction`).

        Args:
            scores (`[b, T, V]` logits, or `[b, T, d]` decoder states if not `are_logits`: the head then runs only on
                the positions with targets), targets (`[b, T]`, -100 ignored), in the same (rolled) order.
        Returns:
            loss (scalar), and the unweighted per-stream parts of the loss `[2]` (detached; `None` without
            `stream_ids`).
        """
        valid = targets != IGNORE_INDEX  # (b, T)
        head = torch.nn.Identity() if are_logits else self.decoder.lm_head
        # Cross-entropy in blocks of rows: the fp32 log-softmax of a [N, V] block stays cache-sized (about 1.6x
        # faster under bf16 autocast on CPU than one [N, V] call) and the float copy of the logits stays small.
        ce = torch.cat([
            F.cross_entropy(head(rows).float(), row_targets, reduction="none")
            for rows, row_targets in zip(scores[valid].split(LOSS_BLOCK_ROWS), targets[valid].split(LOSS_BLOCK_ROWS))
        ])  # (N,); an empty batch of targets still gives a (zero) loss with a grad_fn
        group, num_groups, weights, divisor = self._loss_groups(targets, stream_ids)
        sums = ce.new_zeros(num_groups).index_add(0, group, ce)
        counts = torch.zeros(num_groups, device=ce.device).index_add(0, group, torch.ones_like(ce))
        means = group_means(sums, counts, num_items_in_batch)  # empty groups give 0
        per_stream = means.view(weights.numel(), -1).sum(1) / divisor  # (streams,)
        loss = (weights * per_stream).sum()
        return loss, per_stream.detach() if stream_ids is not None else None

def group_means(sums: torch.Tensor, counts: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """`sums / counts` per loss group, or the batch's share of a whole step's means given the step's counts
    `num_items_in_batch` (per group; or a scalar total, which weights this batch by its share of all targets)."""
    if num_items_in_batch is None:
        return sums / counts.clamp(min=1)
    total = torch.as_tensor(num_items_in_batch, dtype=sums.dtype, device=sums.device).reshape(-1)
    if total.numel() == sums.numel():
        return sums / total.clamp(min=1)
    if total.numel() == 1:
        return sums / counts.clamp(min=1) * (counts.sum() / total.clamp(min=1))
    raise ValueError(f"num_items_in_batch must be a scalar or have one count per loss group ({sums.numel()}), "
                     f"got shape {tuple(total.shape)}")
