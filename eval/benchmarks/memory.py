"""The `memory` benchmark: a memory model against the paper's sequential loop, a full-context Llama and the RMT.

`python -m eval.benchmarks memory [--quick]` compares, in one process and with shared weights wherever the shapes
allow:
  (a) training-step throughput (forward + backward + AdamW step, tokens/s) of the batched
      `MemoryForCausalLM`, the paper's sequential per-chunk algorithm (Badger §4.1-4.4) built from the same
      model's submodules, a full-context `LlamaForCausalLM` with the decoder's weights, and the recurrent
      memory transformer (RMT) with the same decoder weights;
  (b) inference: prefill latency (time to first token), decode tokens/s and KV-cache bytes of the memory
      model and the full-context Llama, both through `generate()` with their caches.
Timings are medians over repeats after warm-up; ratios are only meaningful within one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from eval.benchmarks.models import (build_memory_model, llama_with_decoder_weights, rmt_with_decoder_weights,
                                    sequential_paper_loss)
from eval.benchmarks.reports import check_targets
from eval.benchmarks.timing import autocast, cache_bytes, load_average, median_seconds, progress, settings


@dataclass
class Sizes:
    """Model and workload sizes of one benchmark run."""

    vocab_size: int = 8192
    decoder_hidden: int = 256
    encoder_hidden: int = 128  # half the decoder's width, as in the paper's Fig. 2 models
    num_layers: int = 4
    num_heads: int = 4
    chunk_size: int = 256
    train_tokens_per_step: int = 8192  # batch = this / context: 8 x 1024, 4 x 2048, 2 x 4096
    train_contexts: tuple = (1024, 2048, 4096)
    full_comparison_contexts: tuple = (1024,)  # where the sequential loop and the RMT are timed too
    inference_contexts: tuple = (1024, 2048, 4096, 8192)
    new_tokens: int = 32
    warmup: int = 1
    repeats: int = 3  # training steps
    inference_repeats: int = 5  # generate calls (cheaper, noisier)
    notes: list = field(default_factory=list)


QUICK = Sizes(
    vocab_size=128, decoder_hidden=32, encoder_hidden=16, num_layers=2, num_heads=2, chunk_size=8,
    train_tokens_per_step=64,
    train_contexts=(32, 64), full_comparison_contexts=(32,), inference_contexts=(32, 64), new_tokens=4,
    warmup=0, repeats=1, inference_repeats=1,
)


# ----------------------------------------------------------------------------- (a) training throughput
def _training_step(model, optimizer, loss_fn: Callable[[], torch.Tensor], device: str, dtype: str) -> None:
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = loss_fn()
    loss.backward()
    optimizer.step()


def _step_fn(model, loss_fn: Callable[[], torch.Tensor], device: str, dtype: str) -> Callable[[], None]:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return lambda: _training_step(model, optimizer, loss_fn, device, dtype)


def measure_training(sizes: Sizes, context: int, device: str, dtype: str, full: bool) -> dict:
    """Training tokens/s at one context; `full` adds the sequential loop and the RMT to batched vs Llama."""
    torch.manual_seed(0)
    memory = build_memory_model(sizes, context).to(device)
    llama = llama_with_decoder_weights(memory, sizes, context).to(device)
    batch = max(1, sizes.train_tokens_per_step // context)
    ids = torch.randint(2, sizes.vocab_size, (batch, context), device=device)
    steps = {"memory_batched": _step_fn(memory, lambda: memory(ids, labels=ids).loss, device, dtype)}
    if full:
        steps["memory_sequential"] = _step_fn(memory, lambda: sequential_paper_loss(memory, ids), device, dtype)
    steps["llama_full_context"] = _step_fn(llama, lambda: llama(ids, labels=ids).loss, device, dtype)
    if full:
        rmt = rmt_with_decoder_weights(memory, sizes, context).to(device)
        steps["recurrent_memory"] = _step_fn(rmt, lambda: rmt(ids, labels=ids).loss, device, dtype)
    progress(f"training at context {context}: {', '.join(steps)}")
    load = load_average()
    seconds = median_seconds(steps, sizes, device)
    rate = {name: ids.numel() / value for name, value in seconds.items()}
    base = rate["memory_batched"]
    return {
        "context": context, "chunk_size": sizes.chunk_size, "num_chunks": context // sizes.chunk_size,
        "batch_size": batch, "load_average": [load, load_average()], "tokens_per_s": rate,
        "speedup_of_batched": {f"vs_{name}": base / value for name, value in rate.items() if name != "memory_batched"},
    }


# ----------------------------------------------------------------------------- (b) inference
def _generate(model, ids, new_tokens: int, device: str, dtype: str):
    with torch.no_grad(), autocast(device, dtype):
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, use_cache=True, pad_token_id=1, return_dict_in_generate=True,
        )


def measure_generation(models: dict, ids, sizes: Sizes, device: str, dtype: str) -> dict:
    """Time to first token, decode tokens/s and final KV-cache bytes of greedy `generate`, per model.

    Prefill = `generate(max_new_tokens=1)`; decode rate = `(new_tokens - 1) / (t(new_tokens) - t(1))`, so chunk
    boundaries crossed while decoding (re-encoding, slot recomputation) count in the decode rate.
    """
    n = sizes.new_tokens
    calls = {}
    for name, model in models.items():
        model.eval()
        calls[f"{name}/prefill"] = lambda model=model: _generate(model, ids, 1, device, dtype)
        calls[f"{name}/total"] = lambda model=model: _generate(model, ids, n, device, dtype)
    progress(f"generation, prompt {ids.shape[1]} tokens: {', '.join(models)}")
    seconds = median_seconds(calls, replace(sizes, repeats=sizes.inference_repeats), device)
    result = {}
    for name, model in models.items():
        out = _generate(model, ids, n, device, dtype)
        if out.sequences.shape[1] != ids.shape[1] + n:
            raise RuntimeError(f"{name} generated {out.sequences.shape[1] - ids.shape[1]} tokens, expected {n}")
        prefill, total = seconds[f"{name}/prefill"], seconds[f"{name}/total"]
        result[name] = {"prefill_s": prefill, "decode_tokens_per_s": (n - 1) / max(total - prefill, 1e-9),
                        "kv_cache_bytes": cache_bytes(out.past_key_values)}
    return result


def measure_inference(sizes: Sizes, context: int, device: str, dtype: str) -> dict:
    """Memory model vs full-context Llama (same decoder weights) at `context` tokens, batch 1.

    The prompt holds `context - new_tokens` tokens, so prompt plus generation fill exactly `context`
    (the memory model's effective context with `context / chunk_size` slots).
    """
    torch.manual_seed(0)
    memory = build_memory_model(sizes, context, paper=False).to(device)
    llama = llama_with_decoder_weights(memory, sizes, context).to(device)
    ids = torch.randint(2, sizes.vocab_size, (1, context - sizes.new_tokens), device=device)
    slots = context // sizes.chunk_size
    result = {"context": context, "prompt_tokens": ids.shape[1], "new_tokens": sizes.new_tokens,
              "num_memory_slots": slots}
    load = load_average()
    result.update(measure_generation({"memory": memory, "llama_full_context": llama}, ids, sizes, device, dtype))
    result["load_average"] = [load, load_average()]
    mem, full = result["memory"], result["llama_full_context"]
    result["ratios"] = {
        "prefill_memory_over_llama": mem["prefill_s"] / full["prefill_s"],
        "decode_memory_over_llama": mem["decode_tokens_per_s"] / full["decode_tokens_per_s"],
        "kv_bytes_memory_over_llama": mem["kv_cache_bytes"] / max(full["kv_cache_bytes"], 1),
        "kv_bytes_expected_ratio": (slots + sizes.chunk_size) / context,
    }
    return result


def run(args) -> dict:
    """Runs (a) and (b) of the memory benchmark and returns the JSON-ready result."""
    sizes = replace(QUICK if args.quick else Sizes(), notes=[])
    for name in ("repeats", "warmup", "new_tokens"):
        if getattr(args, name, None) is not None:
            setattr(sizes, name, getattr(args, name))
    if args.repeats is not None:
        sizes.inference_repeats = args.repeats
    sizes.notes += [
        f"training batch = {sizes.train_tokens_per_step} tokens / context (same tokens per step at every context); "
        "batched memory model and sequential loop in paper mode (within-chunk targets, paper loss)",
        f"inference prompt = context - {sizes.new_tokens} tokens, so prompt + generation fill the context; "
        "KV bytes are those of the cache returned after generating",
    ]
    sections = args.sections or ["training", "inference"]
    training = [measure_training(sizes, context, args.device, args.dtype, context in sizes.full_comparison_contexts)
                for context in sizes.train_contexts] if "training" in sections else []
    inference = [measure_inference(sizes, context, args.device, args.dtype)
                 for context in sizes.inference_contexts] if "inference" in sections else []
    return {"benchmark": "memory", "settings": settings(args, sizes=sizes), "training": training,
            "inference": inference, "targets": check_targets(training, inference, quick=args.quick)}
