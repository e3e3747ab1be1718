"""Gradient checkpointing of the masked mixer: the memory one training step keeps, with and without it.

`python -m memory_models.eval.benchmarks checkpointing [--quick]`. The mixer's blocks are transformers
`GradientCheckpointingLayer`s, so `gradient_checkpointing_enable()` recomputes them in the backward pass instead of
keeping their activations. Two measures per setting, each in a fresh process (so one run's allocations cannot hide
the other's): the bytes of the tensors autograd saves for the backward (exact, from `saved_tensors_hooks`), and the
peak resident memory of the step above the memory after building the model (`resource.getrusage`, the process's
high-water mark, so it includes the allocator's overhead). The gradients of both runs must agree (checked here).
The two settings alternate over `--repeats` rounds, a fresh process each; the step's seconds and peak RSS increase
are the median and the min-max over them (`timing.spread`), the saved bytes must be the same every time.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import torch

from memory_models.eval.benchmarks.reports import fmt_spread
from memory_models.eval.benchmarks.timing import interleave, settings, spread
from memory_models.modeling_memory import MaskedMixerConfig, MaskedMixerForCausalLM

FULL = dict(vocab_size=8000, hidden=256, layers=8, length=512, batch=8)
QUICK = dict(vocab_size=128, hidden=32, layers=2, length=32, batch=2)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _step(sizes: dict, checkpointing: bool, queue) -> None:
    """One training step in this (fresh) process; puts its measurements and the gradient norms on `queue`."""
    torch.manual_seed(0)
    config = MaskedMixerConfig(vocab_size=sizes["vocab_size"], hidden_size=sizes["hidden"],
                               num_hidden_layers=sizes["layers"], max_position_embeddings=sizes["length"])
    model = MaskedMixerForCausalLM(config).train()
    if checkpointing:
        model.activation_checkpointing_enable()  # the new name of gradient_checkpointing_enable()
    ids = torch.randint(2, sizes["vocab_size"], (sizes["batch"], sizes["length"]))
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    before = _peak_rss_bytes()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(ids, labels=ids).loss
    loss.backward()
    seconds = time.perf_counter() - start
    grads = torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
    queue.put({"saved_bytes": sum(saved), "peak_rss_increase_bytes": _peak_rss_bytes() - before,
               "seconds": seconds, "grad_norms": grads.tolist()})


def _fresh_step(context, sizes: dict, checkpointing: bool) -> dict:
    """`_step` in a fresh spawned process; its measurements."""
    queue = context.Queue()
    process = context.Process(target=_step, args=(sizes, checkpointing, queue))
    process.start()
    measured = queue.get()
    process.join()
    return measured


def measure(sizes: dict, repeats: int = 3) -> dict:
    """Both settings, alternating over `repeats` rounds, each step in a fresh spawned process."""
    context = multiprocessing.get_context("spawn")
    modes = {"without": False, "with": True}
    runs = interleave({name: lambda enabled=enabled: _fresh_step(context, sizes, enabled)
                       for name, enabled in modes.items()}, repeats, 0)
    result = {**sizes, "repeats": repeats}
    for name, measured in runs.items():
        saved = {run["saved_bytes"] for run in measured}
        if len(saved) != 1:
            raise RuntimeError(f"{name} checkpointing saved different bytes in different runs: {sorted(saved)}")
        result[name] = {"saved_bytes": saved.pop(), "seconds": spread([run["seconds"] for run in measured]),
                        "peak_rss_increase_bytes": spread([run["peak_rss_increase_bytes"] for run in measured])}
    norms = {name: torch.tensor(measured[0]["grad_norms"]) for name, measured in runs.items()}
    result["same_gradients"] = bool(torch.allclose(norms["with"], norms["without"], rtol=1e-4, atol=1e-6))
    result["saved_ratio"] = result["with"]["saved_bytes"] / result["without"]["saved_bytes"]
    return result


def format_checkpointing(result: dict) -> str:
    r = result["checkpointing"]
    mib = 1 << 20
    one, two = (lambda value: f"{value:.1f}"), (lambda value: f"{value:.2f}")
    lines = [
        f"masked-mixer gradient checkpointing: d={r['hidden']}, {r['layers']} blocks, length {r['length']}, "
        f"batch {r['batch']}, vocab {r['vocab_size']}, fp32, one training step per fresh process; median (min-max) "
        f"over {r['repeats']} processes each, alternating",
        "| gradient checkpointing | saved for backward MiB | peak RSS increase MiB | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name in ("without", "with"):
        m = r[name]
        lines.append(f"| {name} | {m['saved_bytes'] / mib:.1f} | "
                     f"{fmt_spread(m['peak_rss_increase_bytes'], 1 / mib, one)} | "
                     f"{fmt_spread(m['seconds'], number=two)} |")
    lines.append(f"saved activations x{r['saved_ratio']:.2f}; same gradients: {r['same_gradients']}")
    return "\n".join(lines)


def run(args) -> dict:
    """The mixer's training-step memory with and without gradient checkpointing (eval/benchmarks/checkpointing.py)."""
    repeats = args.repeats or (1 if args.quick else 3)
    result = measure(QUICK if args.quick else FULL, repeats)
    samples = {"step": f"{repeats} fresh processes per setting, alternating (no warm-up: each measures its first "
                       f"step); one sample = one training step"}
    return {"benchmark": "checkpointing", "settings": settings(args, samples=samples), "checkpointing": result}
