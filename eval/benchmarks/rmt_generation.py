"""RMT generation speed: the segment cache against recomputing the whole prefix at every step.

`python -m eval.benchmarks rmt-generation [--quick]`. Before the cache, `generate()` re-ran every segment of
the prefix for each new token (`use_cache=False` still does exactly that); with the `RecurrentMemoryCache`
a step recomputes only the current segment and carries the memory. Both runs use the same weights and
greedy decoding, and must produce the same tokens (checked here too).
"""

from __future__ import annotations

import time

import torch
from transformers import LlamaConfig

from eval.benchmarks.timing import autocast, settings
from modeling_memory import RecurrentMemoryConfig, RecurrentMemoryForCausalLM


def build_rmt(vocab_size: int, hidden: int, layers: int, chunk_size: int, segments: int) -> RecurrentMemoryForCausalLM:
    decoder = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                          num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                          max_position_embeddings=chunk_size + 2, pad_token_id=1, bos_token_id=0, eos_token_id=1)
    config = RecurrentMemoryConfig(decoder, chunk_size=chunk_size, max_segments=segments)
    return RecurrentMemoryForCausalLM(config).eval()


def bench_rmt_generation(vocab_size: int = 8192, hidden: int = 256, layers: int = 4, chunk_size: int = 256,
                         prompt: int = 1024, new_tokens: int = 64, batch: int = 1, repeats: int = 2,
                         device: str = "cpu") -> dict:
    """Greedy-decoding tokens/s with and without the cache (best of `repeats` after a warm-up)."""
    segments = -(-(prompt + new_tokens) // chunk_size)
    torch.manual_seed(0)
    model = build_rmt(vocab_size, hidden, layers, chunk_size, segments).to(device)
    ids = torch.randint(2, vocab_size, (batch, prompt), device=device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=1)
    result = {"vocab_size": vocab_size, "hidden": hidden, "layers": layers, "chunk_size": chunk_size,
              "prompt": prompt, "new_tokens": new_tokens, "batch": batch}
    outputs = {}
    for name, use_cache in (("uncached", False), ("cached", True)):
        best = float("inf")
        with torch.no_grad():
            model.generate(ids[:, : min(prompt, chunk_size)], max_new_tokens=2, do_sample=False, pad_token_id=1,
                           use_cache=use_cache)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                outputs[name] = model.generate(ids, use_cache=use_cache, **kwargs)
                best = min(best, time.perf_counter() - start)
        result[f"{name}_seconds"] = best
        result[f"{name}_tokens_per_s"] = batch * new_tokens / best
    result["speedup"] = result["cached_tokens_per_s"] / result["uncached_tokens_per_s"]
    result["same_tokens"] = bool(torch.equal(outputs["cached"], outputs["uncached"]))
    return result


def format_rmt_generation(result: dict) -> str:
    r = result["rmt_generation"]
    return "\n".join([
        f"RMT generation ({result['settings']['device']}, {result['settings']['dtype']}): d={r['hidden']}, "
        f"{r['layers']} layers, chunk {r['chunk_size']}, prompt {r['prompt']} + {r['new_tokens']} new tokens, "
        f"batch {r['batch']}",
        "| generate | tokens/s | seconds |",
        "|---|---:|---:|",
        f"| before: whole prefix per token (use_cache=False) | {r['uncached_tokens_per_s']:.1f} | "
        f"{r['uncached_seconds']:.2f} |",
        f"| after: segment cache (default) | {r['cached_tokens_per_s']:.1f} | {r['cached_seconds']:.2f} |",
        f"speedup {r['speedup']:.2f}x; identical tokens: {r['same_tokens']}",
    ])


def run(args) -> dict:
    """RMT greedy decoding with the segment cache vs recomputing the prefix (eval/benchmarks/rmt_generation.py)."""
    sizes = dict(vocab_size=128, hidden=32, layers=2, chunk_size=8, prompt=24, new_tokens=8, repeats=1) if args.quick else {}
    if args.repeats is not None:
        sizes["repeats"] = args.repeats
    with autocast(args.device, args.dtype):
        result = bench_rmt_generation(device=args.device, **sizes)
    return {"benchmark": "rmt-generation", "settings": settings(args), "rmt_generation": result}
