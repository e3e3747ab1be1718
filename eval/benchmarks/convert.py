"""`python -m memory_models.eval.benchmarks convert`: converting a pretrained decoder, and LoRA vs full fine-tuning
speed.

* `bench_conversion`: writes a random Llama-3.2-1B-shaped checkpoint (bf16, tied embeddings, GQA, llama3 rope
  scaling; `--quick`: a small one), then runs `memory-models convert` on it in a child process, `repeats` times,
  and reports each run's wall time and peak resident memory against the checkpoint's bytes (target: peak <=
  1.5x the checkpoint).
* `bench_lora_vs_full`: tokens/s of copy-objective training steps (forward, backward, AdamW step) of a memory
  model whose decoder has the 1B model's width but fewer layers, with LoRA (r=64, alpha=32, the paper's
  helper) and with full fine-tuning, in the same process (one model after the other: both at once would not fit
  a small machine), each step one sample.
Every figure is the median and the min-max over the repeats. Compare ratios from one run, never absolute times
across runs.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import torch

from memory_models.eval.benchmarks.reports import fmt_spread
from memory_models.eval.benchmarks.timing import rates, ratio_bounds, sample_seconds, spread

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET_PEAK_OVER_CHECKPOINT = 1.5


def llama_1b_config(hidden=2048, layers=16, vocab_size=128256, heads=32, kv_heads=8, intermediate=8192):
    """Llama-3.2-1B's config fields (https://huggingface.co/meta-llama/Llama-3.2-1B), sizes overridable."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       head_dim=hidden // heads, max_position_embeddings=131072, rms_norm_eps=1e-5,
                       tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=1,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 8192})


def write_random_checkpoint(folder, config) -> int:
    """Save a random bf16 `LlamaForCausalLM` of `config` (and a small tokenizer) to `folder`; returns its bytes."""
    from transformers import LlamaForCausalLM

    from memory_models.training.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["memory models read the embeddings of earlier chunks"] * 4, vocab_size=300)
    tokenizer.save_pretrained(folder)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    del model
    return sum(p.stat().st_size for p in pathlib.Path(folder).glob("*.safetensors"))


# Runs a module as `__main__`, then prints the process's own peak RSS (`VmHWM`, KiB) as its last stdout line. The
# child's `ru_maxrss` would not do: it keeps the high-water mark of the memory it shared with this process
# before `exec`, so a large benchmark process inflates every child's peak.
PEAK_RSS_WRAPPER = """
import runpy, sys
module, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print(f"\\nVmHWM {peak}", flush=True)
"""


def run_with_peak_rss(module: str, args: list, env: dict) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, its own `VmHWM`) of `python -m module *args` in a child process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{proc.stderr[-3000:]}")
    return seconds, int(proc.stdout.split()[-1]) * 1024


def bench_conversion(quick: bool = False, encoder_preset: str = "llama-3.2-1b-memory", repeats: int = 3) -> dict:
    """Convert a random checkpoint in a child process `repeats` times: wall time and peak RSS of each run
    against the checkpoint size."""
    config = llama_1b_config(hidden=256, layers=2, vocab_size=8192, heads=8, kv_heads=2, intermediate=1024) if quick \
        else llama_1b_config()
    preset = "autoencoder-tiny" if quick else encoder_preset
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        source = pathlib.Path(scratch) / "decoder"
        checkpoint_bytes = write_random_checkpoint(source, config)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        for index in range(repeats):
            output = pathlib.Path(scratch) / f"memory-{index}"
            runs.append(run_with_peak_rss("memory_models.conversion.pretrained_decoder", [
                "--decoder", str(source), "--encoder-preset", preset, "--chunk-size", "8" if quick else "256",
                "--output", str(output)], env))
        output_bytes = sum(p.stat().st_size for p in output.glob("*.safetensors"))
    seconds, peaks = [run[0] for run in runs], [run[1] for run in runs]
    return {"decoder_params": _params(config), "checkpoint_bytes": checkpoint_bytes, "output_bytes": output_bytes,
            "repeats": repeats, "seconds": spread(seconds), "peak_rss_bytes": spread(peaks),
            "peak_over_checkpoint": spread([peak / checkpoint_bytes for peak in peaks]),
            "target_peak_over_checkpoint": TARGET_PEAK_OVER_CHECKPOINT, "encoder_preset": preset}


def _params(config) -> int:
    d, v, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    kv = config.num_key_value_heads * config.head_dim
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size + 2 * d
    return v * d + layers * per_layer + d  # tied head


def _copy_tokens_per_second(model, ids, repeats: int, warmup: int) -> list[float]:
    """Tokens/s of each of `repeats` copy-training steps, after `warmup` steps (optimizer state allocation)."""
    from memory_models.training.objectives.batch import ObjectiveCollator

    batch = ObjectiveCollator.from_config("copy", model.config, max_length=ids.shape[1])(
        [{"input_ids": row.tolist()} for row in ids])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return rates(ids.numel(), sample_seconds({"step": step}, repeats, warmup, "cpu")["step"])


def bench_lora_vs_full(quick: bool = False, layers: int = 2, batch: int = 2, repeats: int = 3, warmup: int = 1,
                       seed: int = 0) -> dict:
    """Copy-training tokens/s with LoRA (r=64, alpha=32, attention + MLP) vs full fine-tuning, same model; one
    step per sample, `warmup` untimed steps first. The ratio of the medians is bounded by the extreme
    combinations (the two modes run one after the other)."""
    from transformers import LlamaForCausalLM

    from memory_models.configuration import get_preset
    from memory_models.modeling_memory import MemoryForCausalLM
    from memory_models.training.lora import apply_lora

    torch.manual_seed(seed)
    if quick:
        config, encoder, chunk, layers = llama_1b_config(256, 2, 8192, 8, 2, 1024), "autoencoder-tiny", 8, 2
    else:
        config, encoder, chunk = llama_1b_config(layers=layers), "llama-3.2-1b-memory", 256
    length = 4 * chunk if quick else 2 * chunk  # copy rows: two chunks of text, two of its copy
    result = {"hidden": config.hidden_size, "layers": config.num_hidden_layers, "vocab_size": config.vocab_size,
              "batch": batch, "length": length, "repeats": repeats, "warmup": warmup}
    ids = torch.randint(2, config.vocab_size, (batch, length // 2))
    for mode in ("full", "lora"):
        torch.manual_seed(seed)
        encoder_config = get_preset(encoder, vocab_size=config.vocab_size).encoder_config
        model = MemoryForCausalLM.from_pretrained_decoder(LlamaForCausalLM(config), encoder_config=encoder_config,
                                                          chunk_size=chunk, num_memory_slots=4,
                                                          freeze_encoder=True, filler="masked")
        if mode == "lora":
            model = apply_lora(model, 64, 32.0)
        result[f"{mode}_trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        result[f"{mode}_tokens_per_s"] = spread(_copy_tokens_per_second(model, torch.cat([ids, ids], 1)[:, :length],
                                                                        repeats, warmup))
        del model
    result["lora_over_full"] = ratio_bounds(result["lora_tokens_per_s"], result["full_tokens_per_s"])
    return result


def run(args) -> dict:
    import transformers

    repeats = args.repeats or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    conversion = bench_conversion(args.quick, repeats=repeats)
    training = bench_lora_vs_full(args.quick, repeats=repeats, warmup=warmup)
    samples = {"conversion": f"{repeats} conversions, each a fresh child process (no warm-up)",
               "lora_vs_full": f"{warmup} warm-up + {repeats} timed copy-training steps per mode; one sample = one "
                               f"step of {training['batch']} x {training['length']} tokens"}
    return {"benchmark": "convert",
            "settings": {"quick": args.quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "samples": samples},
            "conversion": conversion, "lora_vs_full": training}


def format_result(result: dict) -> str:
    conversion, train = result["conversion"], result["lora_vs_full"]
    gib = 1024 ** 3
    one, two, three = (lambda v: f"{v:.1f}"), (lambda v: f"{v:.2f}"), (lambda v: f"{v:.3f}")
    return "\n".join([
        f"convert benchmark ({'quick' if result['settings']['quick'] else 'Llama-3.2-1B shape'}, "
        f"{result['settings']['threads']} threads); median (min-max) over {conversion['repeats']} runs",
        f"conversion of {conversion['decoder_params'] / 1e6:.0f}M decoder parameters, checkpoint "
        f"{conversion['checkpoint_bytes'] / gib:.3f} GiB: {fmt_spread(conversion['seconds'], number=one)} s, peak RSS "
        f"{fmt_spread(conversion['peak_rss_bytes'], 1 / gib, three)} GiB = "
        f"{fmt_spread(conversion['peak_over_checkpoint'], number=two)}x the checkpoint "
        f"(target <= {conversion['target_peak_over_checkpoint']}x)",
        f"copy training, d={train['hidden']}, {train['layers']} layers, batch {train['batch']} x {train['length']}: "
        f"full fine-tuning {fmt_spread(train['full_tokens_per_s'], number=one)} tok/s "
        f"({train['full_trainable_params'] / 1e6:.1f}M trainable), LoRA r=64 "
        f"{fmt_spread(train['lora_tokens_per_s'], number=one)} tok/s ({train['lora_trainable_params'] / 1e6:.1f}M "
        f"trainable), LoRA/full {fmt_spread(train['lora_over_full'], number=two)}",
        f"samples: {result['settings']['samples']['conversion']}; {result['settings']['samples']['lora_vs_full']}",
    ])
