"""Micro-benchmarks for the autoencoder family.

* `bench_unroll`: the one-gather unroll against the reference's Python loop over positions.
* `bench_mixer_vs_llama`: training-step throughput of a masked mixer and a Llama of similar size.

Both return plain dicts (wired into `python -m memory_models.eval.benchmarks`) whose timed figures are the median and
the
min-max over interleaved rounds (`timing.spread`). Compare ratios from one run, never absolute times across
runs (run-to-run spread on shared CPUs is about +-15%).
"""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from memory_models.configuration.presets import llama
from memory_models.eval.benchmarks.timing import (
    autocast, calls_per_sample, paired_ratio, rates, sample_seconds, settings, spread,
)
from memory_models.modeling_memory import MaskedMixerConfig, MaskedMixerForCausalLM
from memory_models.modeling_memory.modeling_autoencoder import unroll_windows


def unroll_loop(embedding: torch.Tensor, length: int) -> torch.Tensor:
    """The reference's unroll: one cyclic window `e[(i mod D + q) mod D]`, `q < D/2`, per position `i`."""
    hidden = embedding.shape[-1]
    width = hidden // 2
    windows = []
    for i in range(length):
        start = i % hidden
        window = torch.cat([embedding[:, start:], embedding[:, :start]], dim=-1)[:, :width]  # rotate, keep D/2
        windows.append(window)
    return torch.stack(windows, dim=1)  # (B, L, D/2)


@torch.no_grad()
def bench_unroll(batch: int = 32, length: int = 512, hidden: int = 512, repeats: int = 5, warmup: int = 1,
                 calibrate: bool = True, device: str = "cpu") -> dict:
    """Time gather-unroll vs loop-unroll of a `[batch, hidden]` embedding to `length` windows (outputs must match).

    One sample = enough consecutive calls for 0.2 s (`calibrate`; one call otherwise), timed per call.
    """
    embedding = torch.randn(batch, hidden, device=device)
    gathered, looped = unroll_windows(embedding, length), unroll_loop(embedding, length)
    torch.testing.assert_close(gathered, looped, rtol=0, atol=0)
    fns = {"gather": lambda: unroll_windows(embedding, length), "loop": lambda: unroll_loop(embedding, length)}
    number = {name: calls_per_sample(fn, calibrate) for name, fn in fns.items()}
    seconds = sample_seconds(fns, repeats, warmup, device, number)
    return {"batch": batch, "length": length, "hidden": hidden, "repeats": repeats, "warmup": warmup,
            "calls_per_sample": number,
            "gather_ms": spread([1e3 * s for s in seconds["gather"]]),
            "loop_ms": spread([1e3 * s for s in seconds["loop"]]),
            "speedup": paired_ratio(seconds["loop"], seconds["gather"])}


def _training_step(model, optimizer, ids):
    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def bench_mixer_vs_llama(
    repeats: int = 5, batch: int = 8, length: int = 256, hidden: int = 256, layers: int = 4,
    vocab_size: int = 8000, warmup: int = 1, device: str = "cpu", seed: int = 0,
) -> dict:
    """Training throughput of `MaskedMixerForCausalLM` vs `LlamaForCausalLM` (paper sizes: intermediate 4d, 4 heads).

    One sample = one AdamW training step (forward, backward, step) of `batch x length` tokens; the two models
    alternate over `repeats` rounds. The mixer's parameters per block are `L^2 + L + 9 d^2`-ish against
    Llama's `12 d^2`; both models get the same width and depth, and the returned parameter counts show how
    similar they are.
    """
    torch.manual_seed(seed)
    special = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)
    models = {"mixer": MaskedMixerForCausalLM(MaskedMixerConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, max_position_embeddings=length,
        **special)).to(device), "llama": LlamaForCausalLM(llama(hidden, layers, 4, vocab_size=vocab_size, positions=length,
                                                                **special)).to(device)}
    ids = torch.randint(0, vocab_size, (batch, length), device=device)
    steps = {}
    for name, model in models.items():
        model.train()
        steps[name] = _training_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4), ids)
    samples = {name: rates(ids.numel(), seconds)
               for name, seconds in sample_seconds(steps, repeats, warmup, device).items()}
    result = {"batch": batch, "length": length, "hidden": hidden, "layers": layers, "repeats": repeats,
              "warmup": warmup}
    for name, model in models.items():
        result[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        result[f"{name}_tokens_per_s"] = spread(samples[name])
    result["mixer_over_llama"] = paired_ratio(samples["mixer"], samples["llama"])
    return result


def run(args) -> dict:
    """Gather-unroll vs the reference loop, and masked-mixer vs Llama training throughput."""
    unroll = dict(batch=2, length=16, hidden=16, calibrate=False) if args.quick else {}
    mixer = dict(batch=2, length=16, hidden=32, layers=2, vocab_size=128) if args.quick else {}
    counts = {"repeats": args.repeats, "warmup": args.warmup}
    defaults = {"repeats": 1, "warmup": 0} if args.quick else {}
    counts = {name: defaults.get(name) if value is None else value for name, value in counts.items()}
    for name, value in counts.items():
        if value is not None:
            unroll[name] = mixer[name] = value
    with autocast(args.device, args.dtype):
        result = {"unroll": bench_unroll(device=args.device, **unroll),
                  "mixer_vs_llama": bench_mixer_vs_llama(device=args.device, **mixer)}
    u, m = result["unroll"], result["mixer_vs_llama"]
    samples = {"unroll": f"{u['warmup']} warm-up + {u['repeats']} timed samples per candidate, interleaved; one "
                         f"sample = {u['calls_per_sample']} consecutive calls, timed per call",
               "mixer_vs_llama": f"{m['warmup']} warm-up + {m['repeats']} timed training steps per model, "
                                 f"interleaved; one sample = one step"}
    return {"benchmark": "autoencoder", "settings": settings(args, samples=samples), **result}
