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

Layout: this file holds the workloads (`Sizes`, `measure_*`) and the CLI; the timing harness is in
`eval/benchmark_harness.py`, the models and the paper's sequential reference in `eval/benchmark_models.py`,
the targets and tables in `eval/benchmark_reports.py`. Each run also writes a plot beside its JSON
(`training.plot`, when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import transformers

from eval import benchmark_convert
from eval.benchmark_autoencoder import bench_mixer_vs_llama, bench_unroll
# The harness, builders and reports are re-exported here: sub-commands and tests import them from `eval.benchmark`.
from eval.benchmark_harness import autocast, cache_bytes, load_average, median_seconds, progress
from eval.benchmark_models import (build_memory_model, llama_config, llama_with_decoder_weights,
                                   rmt_with_decoder_weights, sequential_paper_loss)
from eval.benchmark_reports import TARGETS, check_targets, fmt, format_autoencoder, format_memory_table
from eval.benchmark_rmt_generation import bench_rmt_generation, format_rmt_generation
from training.plot import plot_beside, plot_benchmark


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


def _settings(sizes: Sizes, args) -> dict:
    return {
        "device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "sizes": asdict(sizes), "notes": list(sizes.notes),
    }


def run_memory(args) -> dict:
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
    return {"benchmark": "memory", "settings": _settings(sizes, args), "training": training,
            "inference": inference, "targets": check_targets(training, inference, quick=args.quick)}


def _memory_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", nargs="+", choices=["training", "inference"], default=None,
                        help="what to measure (default: both)")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per decode measurement")


# ----------------------------------------------------------------------------- CLI
@dataclass
class Subcommand:
    """A benchmark: `run(args) -> dict` (JSON-ready), `format(result) -> str`, extra CLI arguments and an
    optional `plot(result, output_stem)` drawn beside the JSON."""

    run: Callable
    format: Callable
    add_arguments: Callable = lambda parser: None
    help: str = ""
    plot: Callable | None = None


SUBCOMMANDS: dict[str, Subcommand] = {}


def add_subcommand(name: str, subcommand: Subcommand) -> None:
    SUBCOMMANDS[name] = subcommand


add_subcommand("memory", Subcommand(run_memory, format_memory_table, _memory_arguments,
                                    "memory model vs sequential loop, full-context Llama and RMT",
                                    plot=plot_benchmark))


def _run_autoencoder(args) -> dict:
    """Gather-unroll vs the reference loop, and masked-mixer vs Llama training throughput."""
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


add_subcommand("autoencoder", Subcommand(_run_autoencoder, format_autoencoder,
                                         help="gather vs loop unroll; masked mixer vs Llama training"))


add_subcommand("convert", Subcommand(benchmark_convert.run, benchmark_convert.format_result,
                                     help="convert a Llama-3.2-1B-shaped checkpoint; LoRA vs full training"))


def _run_rmt_generation(args) -> dict:
    """RMT greedy decoding with the segment cache vs recomputing the prefix (eval/benchmark_rmt_generation.py)."""
    sizes = dict(vocab_size=128, hidden=32, layers=2, chunk_size=8, prompt=24, new_tokens=8, repeats=1) if args.quick else {}
    if args.repeats is not None:
        sizes["repeats"] = args.repeats
    with autocast(args.device, args.dtype):
        result = bench_rmt_generation(device=args.device, **sizes)
    settings = {"device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "transformers": transformers.__version__}
    return {"benchmark": "rmt-generation", "settings": settings, "rmt_generation": result}


add_subcommand("rmt-generation", Subcommand(_run_rmt_generation, format_rmt_generation,
                                            help="RMT generate(): segment cache vs whole-prefix recompute"))

from eval import benchmark_long_context as _long_context  # noqa: E402  (imports this module lazily, no cycle)

add_subcommand("long-context", Subcommand(_long_context.run, _long_context.format_table, _long_context.add_arguments,
                                          "TTFT, decode and KV cache from 4k to 32k tokens: bank, on the fly, Llama"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.benchmark", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="benchmark", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help)
        sub.add_argument("--quick", action="store_true", help="tiny sizes (tests, smoke runs)")
        sub.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        sub.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
        sub.add_argument("--output", default=None, help=f"JSON path (default benchmark-{name}.json); the plot "
                         "goes beside it (.png, .svg)")
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
    plots = plot_beside(output, lambda stem: subcommand.plot(result, stem)) if subcommand.plot else []
    print(f"\nwrote {', '.join(map(str, [output, *plots]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
