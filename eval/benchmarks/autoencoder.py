"""Micro-benchmarks for the autoencoder family (spec Part A.2, §10 items 23-24).

* `bench_unroll`: the one-gather unroll against the reference's Python loop over positions.
* `bench_mixer_vs_llama`: training-step throughput of a masked mixer and a Llama of similar size.

Both return plain dicts (wired into `python -m eval.benchmarks`). Compare ratios from one run, never
absolute times across runs (run-to-run spread on shared CPUs is about +-15%).
"""

from __future__ import annotations

import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eval.benchmarks.timing import autocast, settings
from modeling_memory import MaskedMixerConfig, MaskedMixerForCausalLM
from modeling_memory.modeling_autoencoder import unroll_windows


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


def _seconds(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def bench_unroll(batch: int = 32, length: int = 512, hidden: int = 512, repeats: int = 5, device: str = "cpu") -> dict:
    """Time gather-unroll vs loop-unroll of a `[batch, hidden]` embedding to `length` windows (outputs must match)."""
    embedding = torch.randn(batch, hidden, device=device)
    gathered, looped = unroll_windows(embedding, length), unroll_loop(embedding, length)
    torch.testing.assert_close(gathered, looped, rtol=0, atol=0)
    gather_s = _seconds(lambda: unroll_windows(embedding, length), repeats)
    loop_s = _seconds(lambda: unroll_loop(embedding, length), repeats)
    return {"batch": batch, "length": length, "hidden": hidden, "gather_ms": 1e3 * gather_s,
            "loop_ms": 1e3 * loop_s, "speedup": loop_s / gather_s}


def _train_tokens_per_second(model, batch: int, length: int, steps: int, vocab_size: int) -> float:
    """Tokens/s of full AdamW training steps (forward, backward, step) after one warm-up step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    device = next(model.parameters()).device
    ids = torch.randint(0, vocab_size, (batch, length), device=device)
    model.train()

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch * length / (time.perf_counter() - start)


def bench_mixer_vs_llama(
    steps: int = 5, batch: int = 8, length: int = 256, hidden: int = 256, layers: int = 4,
    vocab_size: int = 8000, device: str = "cpu", seed: int = 0,
) -> dict:
    """Training throughput of `MaskedMixerForCausalLM` vs `LlamaForCausalLM` (paper sizes: intermediate 4d, 4 heads).

    The mixer's parameters per block are `L^2 + L + 9 d^2`-ish against Llama's `12 d^2`; both models get the
    same width and depth, and the returned parameter counts show how similar they are.
    """
    torch.manual_seed(seed)
    special = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)
    mixer = MaskedMixerForCausalLM(MaskedMixerConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, max_position_embeddings=length,
        **special)).to(device)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=length, tie_word_embeddings=False,
        **special)).to(device)
    result = {"batch": batch, "length": length, "hidden": hidden, "layers": layers, "steps": steps}
    for name, model in (("mixer", mixer), ("llama", llama)):
        result[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        result[f"{name}_tokens_per_s"] = _train_tokens_per_second(model, batch, length, steps, vocab_size)
    result["mixer_over_llama"] = result["mixer_tokens_per_s"] / result["llama_tokens_per_s"]
    return result


def run(args) -> dict:
    """Gather-unroll vs the reference loop, and masked-mixer vs Llama training throughput."""
    unroll = dict(batch=2, length=16, hidden=16) if args.quick else {}
    mixer = dict(steps=1, batch=2, length=16, hidden=32, layers=2, vocab_size=128) if args.quick else {}
    if args.repeats is not None:
        unroll["repeats"] = mixer["steps"] = args.repeats
    with autocast(args.device, args.dtype):
        result = {"unroll": bench_unroll(device=args.device, **unroll),
                  "mixer_vs_llama": bench_mixer_vs_llama(device=args.device, **mixer)}
    return {"benchmark": "autoencoder", "settings": settings(args), **result}
