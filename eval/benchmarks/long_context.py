"""Long-context benchmark: `python -m eval.benchmarks long-context [--quick] [--lengths 4096 8192 16384 32768]`.

One memory model with the rolling memory window (`S` slots of chunk `L`), in one process, same weights:

* time to first token (TTFT) after a context of `n` tokens, for (a) the memory model reading a precomputed
  memory bank (the context's complete chunks already encoded; only the last chunk's tokens are fed), (b) the
  memory model encoding the context on the fly (`generate(context)`), (c) a full-context `LlamaForCausalLM`
  with the decoder's shape and weights, up to `--full-context-max` tokens (beyond it: skipped, not measured);
* decode tokens/s and KV-cache bytes after the context (memory model on the fly, and the full-context Llama):
  the memory model's must stay flat as `n` grows;
* encoding throughput of the bank encoder (`eval.banks.encode.encode_documents`), in tokens/s.

TTFT = median wall time of `generate(max_new_tokens=1)`; decode rate = `(new_tokens - 1) / (t(new_tokens) - t(1))`.
Ratios within one run are the numbers to trust (other processes share the CPU).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
import transformers

from eval.banks.encode import encode_documents
from eval.benchmarks.models import llama_config
from eval.benchmarks.timing import autocast, cache_bytes, load_average, median_seconds, progress, settings
from modeling_memory import MemoryConfig, MemoryForCausalLM

# Issue targets (CPU), reported next to what is measured.
TARGETS = {"ttft_bank_over_full_max_at_16384": 0.05, "ttft_fly_over_full_max_at_16384": 0.25,
           "decode_longest_vs_shortest_tolerance": 0.10}


@dataclass
class LongSizes:
    vocab_size: int = 8192
    decoder_hidden: int = 128
    encoder_hidden: int = 64
    num_layers: int = 2
    num_heads: int = 4
    chunk_size: int = 256
    num_memory_slots: int = 4
    lengths: tuple = (4096, 8192, 16384, 32768)
    full_context_max: int = 16384
    new_tokens: int = 16
    encode_batch: int = 64
    warmup: int = 1
    repeats: int = 3


QUICK = LongSizes(vocab_size=128, decoder_hidden=32, encoder_hidden=16, num_heads=2, chunk_size=8, lengths=(64, 128),
                  full_context_max=128, new_tokens=4, encode_batch=8, warmup=0, repeats=1)


def _sizes(args) -> LongSizes:
    sizes = QUICK if args.quick else LongSizes()
    for name in ("lengths", "full_context_max", "new_tokens", "repeats", "warmup"):
        value = getattr(args, name, None)
        if value is not None:
            sizes = replace(sizes, **{name: tuple(value) if name == "lengths" else value})
    for n in sizes.lengths:
        if n <= sizes.chunk_size or n % sizes.chunk_size:
            raise ValueError(f"--lengths must be multiples of chunk_size={sizes.chunk_size} above it, got {n}")
    return sizes


def build_models(sizes: LongSizes):
    """The rolling-window memory model and a `LlamaForCausalLM` factory with its decoder's weights."""
    config = MemoryConfig(
        encoder_config=llama_config(sizes, sizes.encoder_hidden, sizes.chunk_size),
        decoder_config=llama_config(sizes, sizes.decoder_hidden, sizes.num_memory_slots + sizes.chunk_size),
        chunk_size=sizes.chunk_size, num_memory_slots=sizes.num_memory_slots, memory_window="rolling",
        max_context=max(sizes.lengths) + sizes.new_tokens,
    )
    torch.manual_seed(0)
    memory = MemoryForCausalLM(config).eval()

    def full_context_llama(positions: int) -> transformers.LlamaForCausalLM:
        llama = transformers.LlamaForCausalLM(llama_config(sizes, sizes.decoder_hidden, positions))
        llama.load_state_dict(memory.decoder.state_dict())
        return llama.eval()

    return memory, full_context_llama


def _generate(model, new_tokens: int, **inputs):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                              pad_token_id=1, return_dict_in_generate=True)


def measure_length(memory, full_context_llama, sizes: LongSizes, n: int, device: str) -> dict:
    chunk = sizes.chunk_size
    ids = torch.randint(2, sizes.vocab_size, (1, n), generator=torch.Generator().manual_seed(n)).to(device)
    start = time.perf_counter()
    bank = torch.from_numpy(encode_documents(memory, [ids[0, : n - chunk].tolist()], sizes.encode_batch)[0])
    encode_s = time.perf_counter() - start
    bank_inputs = {"input_ids": ids[:, n - chunk :], "memory_embeds": bank[None].to(device)}
    calls = {
        "ttft_bank": lambda: _generate(memory, 1, **bank_inputs),
        "ttft_on_the_fly": lambda: _generate(memory, 1, input_ids=ids),
        "memory_total": lambda: _generate(memory, sizes.new_tokens, input_ids=ids),
    }
    llama = None
    if n <= sizes.full_context_max:
        llama = full_context_llama(n + sizes.new_tokens).to(device)
        calls["ttft_full_context"] = lambda: _generate(llama, 1, input_ids=ids)
        calls["full_context_total"] = lambda: _generate(llama, sizes.new_tokens, input_ids=ids)
    progress(f"long-context {n} tokens: {', '.join(calls)}")
    seconds = median_seconds(calls, sizes, device)
    decode = lambda total, first: (sizes.new_tokens - 1) / max(total - first, 1e-9)  # noqa: E731
    out = _generate(memory, sizes.new_tokens, input_ids=ids)
    from_bank = _generate(memory, sizes.new_tokens, **bank_inputs)
    row = {
        "context": n,
        "ttft_s": {"memory_bank": seconds["ttft_bank"], "memory_on_the_fly": seconds["ttft_on_the_fly"]},
        "decode_tokens_per_s": {"memory": decode(seconds["memory_total"], seconds["ttft_on_the_fly"])},
        "kv_cache_bytes": {"memory": cache_bytes(out.past_key_values)},
        "encode_tokens_per_s": (n - chunk) / encode_s,
        "bank_equals_on_the_fly": bool(torch.equal(out.sequences[0, n:], from_bank.sequences[0, chunk:])),
    }
    if llama is not None:
        full = _generate(llama, sizes.new_tokens, input_ids=ids)
        row["ttft_s"]["full_context"] = seconds["ttft_full_context"]
        row["decode_tokens_per_s"]["full_context"] = decode(seconds["full_context_total"], seconds["ttft_full_context"])
        row["kv_cache_bytes"]["full_context"] = cache_bytes(full.past_key_values)
        row["ratios"] = {"ttft_bank_over_full": seconds["ttft_bank"] / seconds["ttft_full_context"],
                         "ttft_on_the_fly_over_full": seconds["ttft_on_the_fly"] / seconds["ttft_full_context"]}
    return row


def check_targets(rows: list) -> list:
    checks = []
    by_length = {row["context"]: row for row in rows}
    compared = [n for n, row in by_length.items() if "ratios" in row]  # lengths where the full-context Llama ran
    if compared:
        reference = 16384 if 16384 in compared else max(compared)
        row = by_length[reference]
        for key, target in (("ttft_bank_over_full", TARGETS["ttft_bank_over_full_max_at_16384"]),
                            ("ttft_on_the_fly_over_full", TARGETS["ttft_fly_over_full_max_at_16384"])):
            measured = row["ratios"][key]
            checks.append({"name": f"{key} at {reference}", "measured": measured, "target": f"<= {target}",
                           "met": measured <= target})
    short, long = by_length[min(by_length)], by_length[max(by_length)]
    change = long["decode_tokens_per_s"]["memory"] / short["decode_tokens_per_s"]["memory"] - 1
    tolerance = TARGETS["decode_longest_vs_shortest_tolerance"]
    checks.append({"name": f"memory decode tokens/s at {long['context']} vs {short['context']}",
                   "measured": change, "target": f"within +-{tolerance}", "met": abs(change) <= tolerance})
    return checks


def run(args) -> dict:
    sizes = _sizes(args)
    memory, full_context_llama = build_models(sizes)
    memory.to(args.device)
    load = load_average()
    with autocast(args.device, args.dtype):
        rows = [measure_length(memory, full_context_llama, sizes, n, args.device) for n in sizes.lengths]
    return {"benchmark": "long-context", "settings": settings(args, load_average=[load, load_average()], **asdict(sizes)),
            "rows": rows, "targets": check_targets(rows)}


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "skipped"
    if unit == "ms":
        return f"{value * 1000:.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_table(result: dict) -> str:
    s = result["settings"]
    lines = [
        f"long-context benchmark: {s['device']}, {s['threads']} threads; memory model d={s['decoder_hidden']} "
        f"(encoder d={s['encoder_hidden']}), {s['num_layers']} layers, chunk {s['chunk_size']} x "
        f"{s['num_memory_slots']} slots, rolling window; full-context Llama with the decoder's weights",
        "",
        "| context | TTFT bank ms | TTFT on the fly ms | TTFT full ms | bank/full | fly/full | decode tok/s memory "
        "| decode tok/s full | KV bytes memory | KV bytes full | encode tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ttft, decode, kv, ratios = row["ttft_s"], row["decode_tokens_per_s"], row["kv_cache_bytes"], row.get("ratios", {})
        lines.append(
            f"| {row['context']} | {_fmt(ttft['memory_bank'], 'ms')} | {_fmt(ttft['memory_on_the_fly'], 'ms')} | "
            f"{_fmt(ttft.get('full_context'), 'ms')} | {_fmt(ratios.get('ttft_bank_over_full'))} | "
            f"{_fmt(ratios.get('ttft_on_the_fly_over_full'))} | {_fmt(decode['memory'])} | "
            f"{_fmt(decode.get('full_context'))} | {kv['memory']:,} | "
            f"{'skipped' if 'full_context' not in kv else format(kv['full_context'], ',')} | "
            f"{_fmt(row['encode_tokens_per_s'])} |"
        )
    lines += ["", "targets:"]
    for check in result["targets"]:
        lines.append(f"  {'met   ' if check['met'] else 'MISSED'} {check['name']}: {check['measured']:.3g} "
                     f"(target {check['target']})")
    return "\n".join(lines)
