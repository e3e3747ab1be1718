"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for memory models, also on CPU (gloo).

accelerate 1.15 only turns its FSDP plugin on for accelerator back-ends: with `use_cpu` (distributed type
MULTI_CPU) it drops the plugin, so the Trainer's `--fsdp` options would silently train replicated copies.
`memory-models train` therefore refuses `--fsdp` on CPU, and CPU sharding goes through torch directly:

    model = shard(model)                   # every `_no_split_modules` block, then the root (tied weights stay tied)
    ... forward / backward / optimizer.step() as usual ...
    state = full_state_dict(model)         # collective: call on every rank; rank 0 gets the consolidated tensors
"""

from __future__ import annotations

import torch
from torch import nn


def shard(model: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
    """Apply `fully_shard` to each block named by `model._no_split_modules` and then to the whole model."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or [])
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no _no_split_modules to shard by")
    for module in list(model.modules()):
        if type(module).__name__ in blocks:
            fully_shard(module, reshard_after_forward=reshard_after_forward)
    fully_shard(model, reshard_after_forward=reshard_after_forward)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The consolidated (unsharded, CPU) state dict of a sharded model; collective over all ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
