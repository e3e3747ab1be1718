"""Speed and memory benchmarks: a table on stdout and a JSON file.

    python -m eval.benchmark memory [--quick] [--device cpu|cuda] [--dtype fp32|bf16] [--output bench.json]
    python -m eval.benchmark autoencoder [--quick] ...   # eval/benchmark_autoencoder.py, when present
    python -m eval.benchmark long-context [--quick] ...  # eval/benchmark_long_context.py

Sub-commands live in `SUBCOMMANDS` (name -> `Subcommand`); a family adds its own with `add_subcommand`.
Every sub-command takes --quick, --device, --dtype (bf16 = autocast), --output, --repeats and --warmup.

`memory` compares, in one process and with shared weights wherever the shapes allow:
  (a) training-step throughput (forward + backward + AdamW step, tokens/s) of the batched
      `MemoryForCausalLM`, the paper's sequential per-chunk algorithm (Badger §4.1-4.4) built from the same
      model's submodules, a full-context `LlamaForCausalLM` with the decoder's weights, and the recurrent
      memory transformer (RMT) with the same decoder weights;
  (b) inference: prefill latency (time to first token), decode tokens/s and KV-cache bytes of the memory
      model and the full-context Llama, both through `generate()` with their caches.
Timings are medians over repeats after warm-up; ratios are only meaningful within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from modeling_memory import RecurrentMemoryConfig, RecurrentMemoryForCausalLM

try:  # written concurrently; the benchmark reports what exists
    from modeling_memory import MemoryConfig, MemoryForCausalLM
except ImportError:  # pragma: no cover - only while MemoryForCausalLM is missing
    MemoryConfig = MemoryForCausalLM = None

# Issue targets, reported next to what is measured (misses included).
TARGETS = {
    "train_batched_vs_sequential_min": 1.3,
    "train_batched_vs_llama_min_at_1024": 1.0,
    "prefill_vs_llama_max": {4096: 0.5, 8192: 0.3},
    "decode_vs_llama_min_at_4096": 1.5,
    "kv_bytes_relative_tolerance": 0.05,
}


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


# ----------------------------------------------------------------------------- timing helpers
def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _progress(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _load_average() -> float | None:
    """1-minute load average (other processes sharing the CPU make timings noisy), `None` where unknown."""
    try:
        with open("/proc/loadavg") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def median_seconds(fns: dict, sizes: Sizes, device: str) -> dict:
    """Median wall time of each `fns[name]()`: `sizes.warmup` warm-up calls each, then `sizes.repeats` rounds.

    The rounds interleave the candidates (a, b, c, a, b, c, ...), so slow drifts in machine load hit every
    candidate alike; ratios between candidates are the numbers to trust.
    """
    for fn in fns.values():
        for _ in range(sizes.warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(max(1, sizes.repeats)):
        for name, fn in fns.items():
            _synchronize(device)
            start = time.perf_counter()
            fn()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def autocast(device: str, dtype: str):
    """bf16 autocast when asked for, a no-op context otherwise."""
    if dtype == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cache_bytes(cache) -> int:
    """Bytes of all key/value tensors held by a cache (`DynamicCache`, nested tuples, or a wrapper of those)."""
    if cache is None:
        return 0
    if torch.is_tensor(cache):
        return cache.numel() * cache.element_size()
    if isinstance(cache, (list, tuple)):
        return sum(cache_bytes(item) for item in cache)
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(cache_bytes([getattr(layer, "keys", None), getattr(layer, "values", None)]) for layer in layers)
    for name in ("decoder_cache", "cache", "past_key_values", "self_attention_cache"):
        if hasattr(cache, name):
            return cache_bytes(getattr(cache, name))
    return 0


# ----------------------------------------------------------------------------- models
def llama_config(sizes: Sizes, hidden: int, positions: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=sizes.vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=sizes.num_layers, num_attention_heads=sizes.num_heads,
        num_key_value_heads=sizes.num_heads, max_position_embeddings=positions, tie_word_embeddings=False,
        pad_token_id=1, bos_token_id=0, eos_token_id=1,
    )


def build_memory_model(sizes: Sizes, context: int, paper: bool = True):
    """Memory model with `context / chunk_size` slots; `paper=True` uses within-chunk targets and paper loss."""
    slots = context // sizes.chunk_size
    config = MemoryConfig(
        encoder_config=llama_config(sizes, sizes.encoder_hidden, sizes.chunk_size),
        decoder_config=llama_config(sizes, sizes.decoder_hidden, slots + sizes.chunk_size),
        chunk_size=sizes.chunk_size, num_memory_slots=slots,
        paper_chunk_targets=paper, loss_reduction="paper" if paper else "token_mean",
    )
    return MemoryForCausalLM(config)


def llama_with_decoder_weights(memory_model, sizes: Sizes, context: int) -> LlamaForCausalLM:
    """Full-context `LlamaForCausalLM` with the memory model's decoder config and weights."""
    llama = LlamaForCausalLM(llama_config(sizes, sizes.decoder_hidden, context))
    llama.load_state_dict(memory_model.decoder.state_dict())
    return llama


def rmt_with_decoder_weights(memory_model, sizes: Sizes, context: int) -> RecurrentMemoryForCausalLM:
    """Recurrent memory transformer (1 memory token, append) whose decoder has the memory model's weights."""
    config = RecurrentMemoryConfig(
        llama_config(sizes, sizes.decoder_hidden, sizes.chunk_size + 2), chunk_size=sizes.chunk_size,
        max_segments=context // sizes.chunk_size, num_memory_tokens=1,
    )
    rmt = RecurrentMemoryForCausalLM(config)
    rmt.decoder.load_state_dict(memory_model.decoder.state_dict())
    return rmt


# ----------------------------------------------------------------------------- the paper's sequential algorithm
def _paper_memory(model, chunk_ids: torch.LongTensor) -> torch.Tensor:
    """Memory of one chunk `[b, L]` -> `[b, d_dec]` with the model's own encoder, bottleneck and projection."""
    hidden = model.encoder(input_ids=chunk_ids, use_cache=False).last_hidden_state  # (b, L, d_enc)
    memory = hidden[:, -1]
    if model.memory_compress is not None:
        memory = model.memory_expand(model.memory_compress(memory))
    if model.memory_projection is not None:
        memory = model.memory_projection(memory)
    return memory


def sequential_paper_loss(model, input_ids: torch.LongTensor) -> torch.Tensor:
    """The paper's reference forward (Badger §4.1-4.4): `s-1` encoder and `s` decoder calls of batch `b`.

    Fixed layout `[m_0 .. m_{c-1}, filler ..., tokens of chunk c]`, `lm_head` on every decoder position,
    within-chunk targets, per-chunk mean cross-entropy summed and divided by `s`. Built from the submodules of
    a `MemoryForCausalLM` (ones/zeros/learned filler, unpadded input whose length is a multiple of the chunk).
    """
    config = model.config
    chunk, slots = config.chunk_size, config.num_memory_slots
    batch, length = input_ids.shape
    num_chunks = length // chunk
    embed = model.get_input_embeddings()
    filler = model._filler(embed.weight.dtype, input_ids.device)
    memories, total = [], 0.0
    for c in range(num_chunks):
        ids = input_ids[:, c * chunk : (c + 1) * chunk]
        fill = filler.expand(batch, slots - len(memories), -1)
        inputs = torch.cat([*(m[:, None] for m in memories), fill, embed(ids)], dim=1)  # (b, S + L, d)
        hidden = model.decoder.model(inputs_embeds=inputs, use_cache=False).last_hidden_state
        logits = model.decoder.lm_head(hidden)  # every position, as the reference does
        predictions = logits[:, slots : slots + chunk - 1].flatten(0, 1).float()  # within-chunk targets only
        total = total + F.cross_entropy(predictions, ids[:, 1:].flatten())
        if c < num_chunks - 1:  # the last chunk's memory is never needed
            memories.append(_paper_memory(model, ids))
    return total / num_chunks


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
    _progress(f"training at context {context}: {', '.join(steps)}")
    load = _load_average()
    seconds = median_seconds(steps, sizes, device)
    rate = {name: ids.numel() / value for name, value in seconds.items()}
    base = rate["memory_batched"]
    return {
        "context": context, "chunk_size": sizes.chunk_size, "num_chunks": context // sizes.chunk_size,
        "batch_size": batch, "load_average": [load, _load_average()], "tokens_per_s": rate,
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
    _progress(f"generation, prompt {ids.shape[1]} tokens: {', '.join(models)}")
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
    load = _load_average()
    result.update(measure_generation({"memory": memory, "llama_full_context": llama}, ids, sizes, device, dtype))
    result["load_average"] = [load, _load_average()]
    mem, full = result["memory"], result["llama_full_context"]
    result["ratios"] = {
        "prefill_memory_over_llama": mem["prefill_s"] / full["prefill_s"],
        "decode_memory_over_llama": mem["decode_tokens_per_s"] / full["decode_tokens_per_s"],
        "kv_bytes_memory_over_llama": mem["kv_cache_bytes"] / max(full["kv_cache_bytes"], 1),
        "kv_bytes_expected_ratio": (slots + sizes.chunk_size) / context,
    }
    return result


# ----------------------------------------------------------------------------- targets, table, JSON
def check_targets(training: list, inference: list) -> list:
    """One entry per issue target: what was asked, what was measured, met or missed."""
    checks = []

    def add(name, measured, target, met):
        checks.append({"target": name, "measured": round(measured, 4), "threshold": target, "met": bool(met)})

    for row in training:
        speedup = row["speedup_of_batched"]
        if "vs_memory_sequential" in speedup:
            value = speedup["vs_memory_sequential"]
            add(f"train {row['context']}: batched / sequential >= 1.3", value, 1.3, value >= 1.3)
        value = speedup["vs_llama_full_context"]
        threshold = TARGETS["train_batched_vs_llama_min_at_1024"]
        if row is training[0]:
            add(f"train {row['context']}: batched / full Llama >= {threshold}", value, threshold, value >= threshold)
        else:
            add(f"train {row['context']}: batched / full Llama > 1 (ahead)", value, 1.0, value > 1.0)
    for row in inference:
        ratios, context = row["ratios"], row["context"]
        if context in TARGETS["prefill_vs_llama_max"]:
            limit = TARGETS["prefill_vs_llama_max"][context]
            value = ratios["prefill_memory_over_llama"]
            add(f"prefill {context}: memory / Llama <= {limit}", value, limit, value <= limit)
        if context == 4096:
            value = ratios["decode_memory_over_llama"]
            add("decode 4096: memory / Llama tokens/s >= 1.5", value, 1.5, value >= 1.5)
        expected, value = ratios["kv_bytes_expected_ratio"], ratios["kv_bytes_memory_over_llama"]
        tolerance = TARGETS["kv_bytes_relative_tolerance"]
        add(f"KV {context}: memory / Llama within 5% of (slots+chunk)/context={expected:.4f}", value, expected,
            abs(value - expected) <= tolerance * expected)
    return checks


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _load_text(row: dict) -> str:
    values = [v for v in row.get("load_average", []) if v is not None]
    return "-" if not values else "-".join(f"{v:.1f}" for v in values)


TRAINING_COLUMNS = ["memory_batched", "memory_sequential", "llama_full_context", "recurrent_memory"]


def _training_lines(rows: list) -> list:
    header = f"{'context':>8} {'batch':>5} {'chunks':>6} " + " ".join(f"{n:>19}" for n in TRAINING_COLUMNS)
    lines = ["\n(a) training step (fwd + bwd + AdamW), tokens/s", header + "   batched/seq  batched/llama  load"]
    for row in rows:
        rate, speedup = row["tokens_per_s"], row["speedup_of_batched"]
        cells = " ".join(f"{_fmt(rate[n]) if n in rate else '-':>19}" for n in TRAINING_COLUMNS)
        seq = speedup.get("vs_memory_sequential")
        lines.append(f"{row['context']:>8} {row['batch_size']:>5} {row['num_chunks']:>6} {cells}   "
                     f"{_fmt(seq) if seq else '-':>11}  {_fmt(speedup['vs_llama_full_context']):>13}  "
                     f"{_load_text(row)}")
    return lines


def _inference_lines(rows: list) -> list:
    lines = ["\n(b) inference, batch 1 (prefill = time to first token)",
             f"{'context':>8} {'slots':>5} {'prefill mem s':>13} {'prefill llama s':>15} {'ratio':>6} "
             f"{'decode mem tok/s':>16} {'decode llama tok/s':>18} {'ratio':>6} {'KV mem':>10} "
             f"{'KV llama':>11} {'ratio':>7} {'expected':>8}  load"]
    for row in rows:
        mem, full, r = row["memory"], row["llama_full_context"], row["ratios"]
        lines.append(
            f"{row['context']:>8} {row['num_memory_slots']:>5} {mem['prefill_s']:>13.4f} "
            f"{full['prefill_s']:>15.4f} {r['prefill_memory_over_llama']:>6.3f} "
            f"{_fmt(mem['decode_tokens_per_s']):>16} {_fmt(full['decode_tokens_per_s']):>18} "
            f"{r['decode_memory_over_llama']:>6.2f} {mem['kv_cache_bytes']:>10,} {full['kv_cache_bytes']:>11,} "
            f"{r['kv_bytes_memory_over_llama']:>7.4f} {r['kv_bytes_expected_ratio']:>8.4f}  {_load_text(row)}")
    return lines


def format_memory_table(result: dict) -> str:
    """Plain-text tables of a `memory` result."""
    settings = result["settings"]
    lines = [f"memory benchmark: {settings['device']} {settings['dtype']}, {settings['threads']} threads, "
             f"torch {settings['torch']}"]
    if result["training"]:
        lines += _training_lines(result["training"])
    if result["inference"]:
        lines += _inference_lines(result["inference"])
    lines.append("\ntargets")
    for check in result["targets"]:
        lines.append(f"  [{'met' if check['met'] else 'MISSED':>6}] {check['target']}: measured {check['measured']}")
    lines.append("load = 1-minute load average before-after each measurement; above the thread count, other "
                 "processes shared the CPU and the numbers are noisy")
    lines += [f"note: {note}" for note in settings["notes"]]
    return "\n".join(lines)


def _settings(sizes: Sizes, args) -> dict:
    return {
        "device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "sizes": asdict(sizes), "notes": list(sizes.notes),
    }


def run_memory(args) -> dict:
    """Runs (a) and (b) of the memory benchmark and returns the JSON-ready result."""
    if MemoryForCausalLM is None:
        raise RuntimeError("modeling_memory.MemoryForCausalLM is not available: nothing to benchmark")
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
    return {"benchmark": "memory", "settings": _settings(sizes, args), "training": training,
            "inference": inference, "targets": check_targets(training, inference)}


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", nargs="+", choices=["training", "inference"], default=None,
                        help="what to measure (default: both)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per decode measurement")


# ----------------------------------------------------------------------------- CLI
@dataclass
class Subcommand:
    """A benchmark: `run(args) -> dict` (JSON-ready), `format(result) -> str`, extra CLI arguments."""

    run: Callable
    format: Callable
    add_arguments: Callable = lambda parser: None
    help: str = ""


SUBCOMMANDS: dict[str, Subcommand] = {}


def add_subcommand(name: str, subcommand: Subcommand) -> None:
    SUBCOMMANDS[name] = subcommand


add_subcommand("memory", Subcommand(run_memory, format_memory_table, _memory_arguments,
                                    "memory model vs sequential loop, full-context Llama and RMT"))


def _run_autoencoder(args) -> dict:
    """Gather-unroll vs the reference loop, and masked-mixer vs Llama training throughput."""
    from eval.benchmark_autoencoder import bench_mixer_vs_llama, bench_unroll

    unroll = dict(batch=2, length=16, hidden=16) if args.quick else {}
    mixer = dict(steps=1, batch=2, length=16, hidden=32, layers=2, vocab_size=128) if args.quick else {}
    if args.repeats is not None:
        unroll["repeats"] = mixer["steps"] = args.repeats
    with autocast(args.device, args.dtype):
        result = {"unroll": bench_unroll(device=args.device, **unroll),
                  "mixer_vs_llama": bench_mixer_vs_llama(device=args.device, **mixer)}
    settings = {"device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "transformers": transformers.__version__}
    return {"benchmark": "autoencoder", "settings": settings, **result}


def _format_autoencoder(result: dict) -> str:
    unroll, mixer = result["unroll"], result["mixer_vs_llama"]
    return "\n".join([
        f"autoencoder benchmark: {result['settings']['device']} {result['settings']['dtype']}",
        f"unroll [{unroll['batch']} x {unroll['hidden']}] -> {unroll['length']} windows: gather "
        f"{unroll['gather_ms']:.3f} ms, loop {unroll['loop_ms']:.3f} ms, speedup {unroll['speedup']:.1f}x",
        f"training tokens/s at {mixer['batch']} x {mixer['length']}, d={mixer['hidden']}, {mixer['layers']} layers: "
        f"mixer {_fmt(mixer['mixer_tokens_per_s'])} ({mixer['mixer_params']:,} params), llama "
        f"{_fmt(mixer['llama_tokens_per_s'])} ({mixer['llama_params']:,} params), "
        f"ratio {mixer['mixer_over_llama']:.2f}",
    ])


def _register_autoencoder() -> None:
    """`autoencoder` sub-command, when eval/benchmark_autoencoder.py (written separately) is importable."""
    try:
        from eval.benchmark_autoencoder import bench_mixer_vs_llama, bench_unroll  # noqa: F401
    except ImportError:
        return
    add_subcommand("autoencoder", Subcommand(_run_autoencoder, _format_autoencoder,
                                             help="gather vs loop unroll; masked mixer vs Llama training"))


_register_autoencoder()

from eval import benchmark_long_context as _long_context  # noqa: E402  (imports this module lazily, no cycle)

add_subcommand("long-context", Subcommand(_long_context.run, _long_context.format_table, _long_context.add_arguments,
                                          "TTFT, decode and KV cache from 4k to 32k tokens: bank, on the fly, Llama"))


def _run_rmt_generation(args) -> dict:
    """RMT greedy decoding with the segment cache vs recomputing the prefix (eval/benchmark_rmt_generation.py)."""
    from eval.benchmark_rmt_generation import bench_rmt_generation

    sizes = dict(vocab_size=128, hidden=32, layers=2, chunk_size=8, prompt=24, new_tokens=8, repeats=1) if args.quick else {}
    if args.repeats is not None:
        sizes["repeats"] = args.repeats
    with autocast(args.device, args.dtype):
        result = bench_rmt_generation(device=args.device, **sizes)
    settings = {"device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "transformers": transformers.__version__}
    return {"benchmark": "rmt-generation", "settings": settings, "rmt_generation": result}


def _register_rmt_generation() -> None:
    from eval.benchmark_rmt_generation import format_rmt_generation

    add_subcommand("rmt-generation", Subcommand(_run_rmt_generation, format_rmt_generation,
                                                help="RMT generate(): segment cache vs whole-prefix recompute"))


_register_rmt_generation()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.benchmark", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help)
        sub.add_argument("--quick", action="store_true", help="tiny sizes (tests, smoke runs)")
        sub.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        sub.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
        sub.add_argument("--output", default=None, help=f"JSON path (default benchmark-{name}.json)")
        sub.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
        sub.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls per measurement")
        sub.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
        subcommand.add_arguments(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    subcommand = SUBCOMMANDS[args.benchmark]
    result = subcommand.run(args)
    output = args.output or f"benchmark-{args.benchmark}.json"
    with open(output, "w") as handle:  # before printing, so a closed stdout cannot lose the measurements
        json.dump(result, handle, indent=2)
    print(subcommand.format(result))
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
