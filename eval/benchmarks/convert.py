"""`python -m eval.benchmarks convert`: converting a pretrained decoder, and LoRA vs full fine-tuning speed.

* `bench_conversion`: writes a random Llama-3.2-1B-shaped checkpoint (bf16, tied embeddings, GQA, llama3 rope
  scaling; `--quick`: a small one), then runs `memory-models convert` on it in a child process and reports its
  wall time and peak resident memory against the checkpoint's bytes (target: peak <= 1.5x the checkpoint).
* `bench_lora_vs_full`: tokens/s of copy-objective training steps (forward, backward, AdamW step) of a memory
  model whose decoder has the 1B model's width but fewer layers, with LoRA (r=64, alpha=32, the paper's
  helper) and with full fine-tuning, in the same process.
Compare ratios from one run, never absolute times across runs.
"""

from __future__ import annotations

import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import torch

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

    from training.data.tokenizer import train_tokenizer

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


def bench_conversion(quick: bool = False, encoder_preset: str = "llama-3.2-1b-memory") -> dict:
    """Convert a random checkpoint in a child process: wall time and peak RSS against the checkpoint size."""
    config = llama_1b_config(hidden=256, layers=2, vocab_size=8192, heads=8, kv_heads=2, intermediate=1024) if quick \
        else llama_1b_config()
    preset = "autoencoder-tiny" if quick else encoder_preset
    with tempfile.TemporaryDirectory() as scratch:
        source, output = pathlib.Path(scratch) / "decoder", pathlib.Path(scratch) / "memory"
        checkpoint_bytes = write_random_checkpoint(source, config)
        command = [sys.executable, "-m", "conversion.pretrained_decoder", "--decoder", str(source),
                   "--encoder-preset", preset, "--chunk-size", "8" if quick else "256", "--output", str(output)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"conversion failed:\n{proc.stderr[-3000:]}")
        # The only child of this process so far: its peak RSS (KiB on Linux).
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        output_bytes = sum(p.stat().st_size for p in output.glob("*.safetensors"))
    return {"decoder_params": _params(config), "checkpoint_bytes": checkpoint_bytes, "output_bytes": output_bytes,
            "seconds": seconds, "peak_rss_bytes": peak, "peak_over_checkpoint": peak / checkpoint_bytes,
            "target_peak_over_checkpoint": TARGET_PEAK_OVER_CHECKPOINT, "encoder_preset": preset}


def _params(config) -> int:
    d, v, layers = config.hidden_size, config.vocab_size, config.num_hidden_layers
    kv = config.num_key_value_heads * config.head_dim
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size + 2 * d
    return v * d + layers * per_layer + d  # tied head


def _copy_steps_per_second(model, ids, steps: int) -> float:
    from training.data.objectives import ObjectiveCollator

    batch = ObjectiveCollator.from_config("copy", model.config, max_length=ids.shape[1])(
        [{"input_ids": row.tolist()} for row in ids])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state allocation)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * ids.numel() / (time.perf_counter() - start)


def bench_lora_vs_full(quick: bool = False, layers: int = 2, batch: int = 2, steps: int = 2, seed: int = 0) -> dict:
    """Copy-training tokens/s with LoRA (r=64, alpha=32, attention + MLP) vs full fine-tuning, same model."""
    from transformers import LlamaForCausalLM

    from configuration import get_preset
    from modeling_memory import MemoryForCausalLM
    from training.lora import apply_lora

    torch.manual_seed(seed)
    if quick:
        config, encoder, chunk, layers = llama_1b_config(256, 2, 8192, 8, 2, 1024), "autoencoder-tiny", 8, 2
    else:
        config, encoder, chunk = llama_1b_config(layers=layers), "llama-3.2-1b-memory", 256
    length = 4 * chunk if quick else 2 * chunk  # copy rows: two chunks of text, two of its copy
    result = {"hidden": config.hidden_size, "layers": config.num_hidden_layers, "vocab_size": config.vocab_size,
              "batch": batch, "length": length, "steps": steps}
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
        result[f"{mode}_tokens_per_s"] = _copy_steps_per_second(model, torch.cat([ids, ids], 1)[:, :length], steps)
        del model
    result["lora_over_full"] = result["lora_tokens_per_s"] / result["full_tokens_per_s"]
    return result


def run(args) -> dict:
    import transformers

    result = {"benchmark": "convert",
              "settings": {"quick": args.quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "transformers": transformers.__version__},
              "conversion": bench_conversion(args.quick),
              "lora_vs_full": bench_lora_vs_full(args.quick, steps=args.repeats or 2)}
    return result


def format_result(result: dict) -> str:
    conversion, train = result["conversion"], result["lora_vs_full"]
    gib = 1024 ** 3
    return "\n".join([
        f"convert benchmark ({'quick' if result['settings']['quick'] else 'Llama-3.2-1B shape'}, "
        f"{result['settings']['threads']} threads)",
        f"conversion of {conversion['decoder_params'] / 1e6:.0f}M decoder parameters, checkpoint "
        f"{conversion['checkpoint_bytes'] / gib:.3f} GiB: {conversion['seconds']:.1f} s, peak RSS "
        f"{conversion['peak_rss_bytes'] / gib:.3f} GiB = {conversion['peak_over_checkpoint']:.2f}x the checkpoint "
        f"(target <= {conversion['target_peak_over_checkpoint']}x)",
        f"copy training, d={train['hidden']}, {train['layers']} layers, batch {train['batch']} x {train['length']}: "
        f"full fine-tuning {train['full_tokens_per_s']:.1f} tok/s ({train['full_trainable_params'] / 1e6:.1f}M "
        f"trainable), LoRA r=64 {train['lora_tokens_per_s']:.1f} tok/s ({train['lora_trainable_params'] / 1e6:.1f}M "
        f"trainable), LoRA/full {train['lora_over_full']:.2f}",
    ])
