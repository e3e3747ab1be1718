"""RMT generation speed: the segment cache against recomputing the whole prefix at every step.

`python -m memory_models.eval.benchmarks rmt-generation [--quick]`. Before the cache, `generate()` re-ran every
segment of
the prefix for each new token (`use_cache=False` still does exactly that); with the `RecurrentMemoryCache`
a step recomputes only the current segment and carries the memory. Both runs use the same weights and
greedy decoding, and must produce the same tokens (checked here too). One sample = one `generate` call of each
kind, the two alternating; tokens/s = new tokens / the call's time, decode tokens/s = the tokens after the first
/ their own time (`timing.DecodeClock`); every figure is the median and the min-max over the repeats.
"""

from __future__ import annotations

import torch

from memory_models.configuration.presets import llama
from memory_models.eval.benchmarks.reports import fmt_spread
from memory_models.eval.benchmarks.timing import (
    autocast, generation_figures, paired_ratio, rates, sample_generation, settings, spread,
)
from memory_models.modeling_memory import RecurrentMemoryConfig, RecurrentMemoryForCausalLM


def build_rmt(vocab_size: int, hidden: int, layers: int, chunk_size: int, segments: int) -> RecurrentMemoryForCausalLM:
    decoder = llama(hidden, layers, max(1, hidden // 64), vocab_size=vocab_size, positions=chunk_size + 2)
    config = RecurrentMemoryConfig(decoder, chunk_size=chunk_size, max_segments=segments)
    return RecurrentMemoryForCausalLM(config).eval()


def bench_rmt_generation(vocab_size: int = 8192, hidden: int = 256, layers: int = 4, chunk_size: int = 256,
                         prompt: int = 1024, new_tokens: int = 64, batch: int = 1, repeats: int = 3, warmup: int = 1,
                         device: str = "cpu") -> dict:
    """Greedy-decoding tokens/s with and without the cache, interleaved over `repeats` rounds.

    A warm-up call generates 2 tokens after the first segment of the prompt (`warmup` of them per kind).
    """
    segments = -(-(prompt + new_tokens) // chunk_size)
    torch.manual_seed(0)
    model = build_rmt(vocab_size, hidden, layers, chunk_size, segments).to(device)
    ids = torch.randint(2, vocab_size, (batch, prompt), device=device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=1)
    with torch.no_grad():
        for use_cache in (False, True):
            for _ in range(warmup):
                model.generate(ids[:, : min(prompt, chunk_size)], max_new_tokens=2, do_sample=False, pad_token_id=1,
                               use_cache=use_cache)
        kinds = {"uncached": False, "cached": True}
        clocks = sample_generation({name: lambda streamer, use_cache=use_cache: model.generate(
            ids, use_cache=use_cache, streamer=streamer, **kwargs) for name, use_cache in kinds.items()},
            repeats, 0, device, label="rmt-generation")
        outputs = {name: model.generate(ids, use_cache=use_cache, **kwargs) for name, use_cache in kinds.items()}
    result = {"vocab_size": vocab_size, "hidden": hidden, "layers": layers, "chunk_size": chunk_size,
              "prompt": prompt, "new_tokens": new_tokens, "batch": batch, "repeats": repeats, "warmup": warmup}
    samples = {}
    for name in kinds:
        seconds = [clock.total_s() for clock in clocks[name]]
        samples[name] = rates(batch * new_tokens, seconds)
        result[f"{name}_seconds"] = spread(seconds)
        result[f"{name}_tokens_per_s"] = spread(samples[name])
        result[f"{name}_decode_tokens_per_s"] = generation_figures(clocks[name], new_tokens)["decode_tokens_per_s"]
    result["speedup"] = paired_ratio(samples["cached"], samples["uncached"])
    result["same_tokens"] = bool(torch.equal(outputs["cached"], outputs["uncached"]))
    return result


def format_rmt_generation(result: dict) -> str:
    r = result["rmt_generation"]
    one, two = (lambda value: f"{value:.1f}"), (lambda value: f"{value:.2f}")
    rows = [(f"| {label} | {fmt_spread(r[f'{name}_tokens_per_s'], number=one)} | "
             f"{fmt_spread(r[f'{name}_decode_tokens_per_s'], number=one)} | "
             f"{fmt_spread(r[f'{name}_seconds'], number=two)} |")
            for name, label in (("uncached", "before: whole prefix per token (use_cache=False)"),
                                ("cached", "after: segment cache (default)"))]
    return "\n".join([
        f"RMT generation ({result['settings']['device']}, {result['settings']['dtype']}): d={r['hidden']}, "
        f"{r['layers']} layers, chunk {r['chunk_size']}, prompt {r['prompt']} + {r['new_tokens']} new tokens, "
        f"batch {r['batch']}; median (min-max) over {r['repeats']} calls each, alternating",
        "| generate | tokens/s (whole call) | decode tokens/s (after the first) | seconds |",
        "|---|---:|---:|---:|",
        *rows,
        f"speedup {fmt_spread(r['speedup'], number=two)}x; identical tokens: {r['same_tokens']}",
    ])


def run(args) -> dict:
    """RMT greedy decoding with the segment cache vs recomputing the prefix (eval/benchmarks/rmt_generation.py)."""
    sizes = dict(vocab_size=128, hidden=32, layers=2, chunk_size=8, prompt=24, new_tokens=8, repeats=1,
                 warmup=0) if args.quick else {}
    for name in ("repeats", "warmup"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    with autocast(args.device, args.dtype):
        result = bench_rmt_generation(device=args.device, **sizes)
    samples = {"generation": f"{result['warmup']} warm-up + {result['repeats']} timed generate calls per kind, "
                             f"alternating; one sample = one call of {result['prompt']} prompt + "
                             f"{result['new_tokens']} new tokens"}
    return {"benchmark": "rmt-generation", "settings": settings(args, samples=samples), "rmt_generation": result}
