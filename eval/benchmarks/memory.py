"""The `memory` benchmark: a memory model against the paper's sequential loop, a full-context Llama and the RMT.

`python -m memory_models.eval.benchmarks memory [--quick]` compares, in one process and with shared weights wherever
the shapes
allow:
  (a) training-step throughput (forward + backward + AdamW step, tokens/s) of the batched
      `MemoryForCausalLM`, the paper's sequential per-chunk algorithm (Badger §4.1-4.4) built from the same
      model's submodules, a full-context `LlamaForCausalLM` with the decoder's weights, and the recurrent
      memory transformer (RMT) with the same decoder weights;
  (b) inference: prefill latency (time to first token), decode tokens/s and KV-cache bytes of the memory
      model and the full-context Llama, both through `generate()` with their caches; the decode clock
      (`timing.DecodeClock`) timestamps every new token inside one `generate` call.
Every timed figure is the median and the min-max over the repeats (`timing.spread`); candidates run in
interleaved rounds and their ratios are taken per round. Ratios are only meaningful within one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from memory_models.eval.benchmarks.models import (
    build_memory_model, llama_with_decoder_weights, rmt_with_decoder_weights, sequential_paper_loss,
)
from memory_models.eval.benchmarks.reports import check_targets
from memory_models.eval.benchmarks.timing import (
    autocast, cache_bytes, generation_figures, load_average, paired_ratio, progress, rates, sample_generation,
    sample_seconds, settings, spread,
)


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
    new_tokens: int = 64  # per generate call: the first token times the prefill, the other 63 the decode
    warmup: int = 1
    repeats: int = 5  # training steps per model (one step = one sample)
    inference_repeats: int = 10  # generate calls per model (one call = one sample of TTFT and of decode rate)
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
    seconds = sample_seconds(steps, sizes.repeats, sizes.warmup, device, label=f"training {context}")
    samples = {name: rates(ids.numel(), values) for name, values in seconds.items()}
    base = samples["memory_batched"]
    return {
        "context": context, "chunk_size": sizes.chunk_size, "num_chunks": context // sizes.chunk_size,
        "batch_size": batch, "load_average": [load, load_average()],
        "tokens_per_s": {name: spread(values) for name, values in samples.items()},
        "speedup_of_batched": {f"vs_{name}": paired_ratio(base, values)
                               for name, values in samples.items() if name != "memory_batched"},
    }


# ----------------------------------------------------------------------------- (b) inference
def _generate(model, ids, new_tokens: int, device: str, dtype: str, streamer=None):
    with torch.no_grad(), autocast(device, dtype):
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, use_cache=True, pad_token_id=1, return_dict_in_generate=True, streamer=streamer,
        )


def measure_generation(models: dict, ids, sizes: Sizes, device: str, dtype: str) -> tuple[dict, dict]:
    """Time to first token, decode tokens/s and final KV-cache bytes of greedy `generate`, per model.

    One sample = one `generate(new_tokens)` call timed by a `DecodeClock`: prefill = call to first new token;
    decode rate = `(new_tokens - 1) / (t_last - t_first)`, so chunk boundaries crossed while decoding
    (re-encoding, slot recomputation) count in the decode rate and the prefill does not. Returns the figures
    per model and the clocks (for per-round ratios).
    """
    n = sizes.new_tokens
    for model in models.values():
        model.eval()
    calls = {name: lambda streamer, model=model: _generate(model, ids, n, device, dtype, streamer)
             for name, model in models.items()}
    progress(f"generation, prompt {ids.shape[1]} tokens: {', '.join(models)}")
    clocks = sample_generation(calls, sizes.inference_repeats, sizes.warmup, device, label=f"prompt {ids.shape[1]}")
    result = {}
    for name, model in models.items():
        out = _generate(model, ids, n, device, dtype)
        if out.sequences.shape[1] != ids.shape[1] + n:
            raise RuntimeError(f"{name} generated {out.sequences.shape[1] - ids.shape[1]} tokens, expected {n}")
        figures = generation_figures(clocks[name], n)
        result[name] = {"prefill_s": figures["first_token_s"], "decode_tokens_per_s": figures["decode_tokens_per_s"],
                        "decode_steps": figures["decode_steps"], "kv_cache_bytes": cache_bytes(out.past_key_values)}
    return result, clocks


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
    figures, clocks = measure_generation({"memory": memory, "llama_full_context": llama}, ids, sizes, device, dtype)
    result.update(figures)
    result["load_average"] = [load, load_average()]
    mem, full = clocks["memory"], clocks["llama_full_context"]
    kv_memory, kv_llama = result["memory"]["kv_cache_bytes"], result["llama_full_context"]["kv_cache_bytes"]
    result["ratios"] = {
        "prefill_memory_over_llama": paired_ratio([c.first_token_s() for c in mem], [c.first_token_s() for c in full]),
        "decode_memory_over_llama": paired_ratio([c.decode_tokens_per_s() for c in mem],
                                                 [c.decode_tokens_per_s() for c in full]),
        "kv_bytes_memory_over_llama": kv_memory / max(kv_llama, 1),
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
    if sizes.new_tokens < 2:
        raise ValueError(f"--new-tokens must be at least 2 (a decode rate needs a token after the first), "
                         f"got {sizes.new_tokens}")
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
    samples = {"training": f"{sizes.warmup} warm-up + {sizes.repeats} timed steps per model and context, "
                           f"interleaved; one sample = one step of {sizes.train_tokens_per_step} tokens",
               "inference": f"{sizes.warmup} warm-up + {sizes.inference_repeats} timed generate calls per model and "
                            f"context, interleaved; one sample = one call: prefill to the first token, then "
                            f"{sizes.new_tokens - 1} decode steps timed token by token"}
    return {"benchmark": "memory", "settings": settings(args, sizes=sizes, samples=samples), "training": training,
            "inference": inference, "targets": check_targets(training, inference, quick=args.quick)}
