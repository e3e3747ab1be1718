"""Long-context benchmark:
`python -m memory_models.eval.benchmarks long-context [--quick] [--lengths 4096 8192 16384 32768]`.

One memory model with the rolling memory window (`S` slots of chunk `L`), in one process, same weights:

* time to first token (TTFT) after a context of `n` tokens, for (a) the memory model reading a precomputed
  memory bank (the context's complete chunks already encoded; only the last chunk's tokens are fed), (b) the
  memory model encoding the context on the fly (`generate(context)`), (c) a full-context `LlamaForCausalLM`
  with the decoder's shape and weights, up to `--full-context-max` tokens (beyond it: skipped, not measured);
* decode tokens/s of each candidate and KV-cache bytes after the context: the memory model's must stay flat as
  `n` grows (judged on decode rounds of their own: the cheap bank calls of every length back to back, many
  times, as one call's decode rate varies by +-40% even on an idle machine);
* encoding throughput of the bank encoder (`eval.banks.encode.encode_documents`), in tokens/s.

One sample = one `generate(max_new_tokens=new_tokens)` call per candidate (bank, on the fly, full context) and
length, all of them in each round, timed by a `timing.DecodeClock`: TTFT = from the call to the first new token; decode
rate = the `new_tokens - 1` tokens after the first over their own time, so the prefill never enters it. Every
timed figure is the median and the min-max over the repeats; ratios between candidates or lengths are taken per
round.
Ratios within one run are the numbers to trust (other processes share the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import transformers

from memory_models.eval.banks.encode import encode_documents
from memory_models.eval.benchmarks.models import llama_config
from memory_models.eval.benchmarks.reports import fmt_spread, verdict
from memory_models.eval.benchmarks.timing import (
    autocast, cache_bytes, generation_figures, paired_ratio, progress, rates, sample_generation, sample_seconds,
    settings, spread,
)
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM

# Targets (CPU), reported next to what is measured and judged on the medians.
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
    new_tokens: int = 64  # per generate call: the first times the prefill, the other 63 the decode
    encode_batch: int = 64
    warmup: int = 1
    repeats: int = 10  # rounds of every generate call (TTFT, decode of the others); encodes per length
    decode_repeats: int = 100  # rounds of the back-to-back bank calls timing the memory decode (+-40% per call)


QUICK = LongSizes(vocab_size=128, decoder_hidden=32, encoder_hidden=16, num_heads=2, chunk_size=8, lengths=(64, 128),
                  full_context_max=128, new_tokens=4, encode_batch=8, warmup=0, repeats=1, decode_repeats=2)


def _sizes(args) -> LongSizes:
    sizes = QUICK if args.quick else LongSizes()
    for name in ("lengths", "full_context_max", "new_tokens", "repeats", "decode_repeats", "warmup"):
        value = getattr(args, name, None)
        if value is not None:
            sizes = replace(sizes, **{name: tuple(sorted(set(value))) if name == "lengths" else value})
    for n in sizes.lengths:
        if n <= sizes.chunk_size or n % sizes.chunk_size:
            raise ValueError(f"--lengths must be multiples of chunk_size={sizes.chunk_size} above it, got {n}")
    if sizes.new_tokens < 2:
        raise ValueError(f"--new-tokens must be at least 2 (a decode rate needs a token after the first), "
                         f"got {sizes.new_tokens}")
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


def _generate(model, new_tokens: int, streamer=None, **inputs):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                              pad_token_id=1, return_dict_in_generate=True, streamer=streamer)


@dataclass
class Case:
    """One context length: its tokens, the bank of its complete chunks but the last, and what is timed."""

    n: int
    ids: torch.Tensor
    bank_inputs: dict
    llama: transformers.LlamaForCausalLM | None


def prepare(memory, full_context_llama, sizes: LongSizes, n: int, device: str) -> Case:
    """Random context of `n` tokens, its bank (encoded once, untimed) and, up to `full_context_max`, a Llama."""
    chunk = sizes.chunk_size
    ids = torch.randint(2, sizes.vocab_size, (1, n), generator=torch.Generator().manual_seed(n)).to(device)
    bank = torch.from_numpy(encode_documents(memory, [ids[0, : n - chunk].tolist()], sizes.encode_batch)[0])
    llama = full_context_llama(n + sizes.new_tokens).to(device) if n <= sizes.full_context_max else None
    return Case(n, ids, {"input_ids": ids[:, n - chunk :], "memory_embeds": bank[None].to(device)}, llama)


def generate_calls(memory, case: Case, new_tokens: int) -> dict:
    """The timed `generate(streamer)` calls of one length: from the bank, on the fly and (if built) full context."""
    calls = {"memory_bank": lambda streamer: _generate(memory, new_tokens, streamer, **case.bank_inputs),
             "memory_on_the_fly": lambda streamer: _generate(memory, new_tokens, streamer, input_ids=case.ids)}
    if case.llama is not None:
        calls["full_context"] = lambda streamer: _generate(case.llama, new_tokens, streamer, input_ids=case.ids)
    return calls


def length_row(memory, case: Case, clocks: dict, shortest: dict, encode_seconds: list, sizes: LongSizes) -> dict:
    """TTFT and decode tokens/s of each candidate, KV bytes and encoder tokens/s after `case.n` tokens.

    `clocks` maps each candidate to its clocks, and "memory_decode" to the clocks of the decode rounds (bank
    calls); `shortest` maps "memory_bank" and "memory_on_the_fly" to the clocks at the shortest length that their
    decode rates are compared with, round by round.
    """
    n, chunk, new = case.n, sizes.chunk_size, sizes.new_tokens
    clocks = dict(clocks)
    decode_clocks = clocks.pop("memory_decode")
    figures = {name: generation_figures(values, new) for name, values in clocks.items()}
    figures["memory_bank"]["decode_tokens_per_s"] = generation_figures(decode_clocks, new)["decode_tokens_per_s"]
    decode = {"memory_bank": [clock.decode_tokens_per_s() for clock in decode_clocks],
              "memory_on_the_fly": [clock.decode_tokens_per_s() for clock in clocks["memory_on_the_fly"]]}
    out, from_bank = _generate(memory, new, input_ids=case.ids), _generate(memory, new, **case.bank_inputs)
    row = {
        "context": n,
        "ttft_s": {name: figure["first_token_s"] for name, figure in figures.items()},
        "decode_tokens_per_s": {name: figure["decode_tokens_per_s"] for name, figure in figures.items()},
        "decode_steps": {name: figure["decode_steps"] for name, figure in figures.items()},
        "decode_over_shortest": {name: paired_ratio(decode[name], [c.decode_tokens_per_s() for c in shortest[name]])
                                 for name in ("memory_bank", "memory_on_the_fly")},
        "kv_cache_bytes": {"memory": cache_bytes(out.past_key_values)},
        "encode_tokens_per_s": spread(rates(n - chunk, encode_seconds)),
        "bank_equals_on_the_fly": bool(torch.equal(out.sequences[0, n:], from_bank.sequences[0, chunk:])),
    }
    if case.llama is not None:
        full = _generate(case.llama, new, input_ids=case.ids)
        row["kv_cache_bytes"]["full_context"] = cache_bytes(full.past_key_values)
        first = {name: [clock.first_token_s() for clock in values] for name, values in clocks.items()}
        row["ratios"] = {"ttft_bank_over_full": paired_ratio(first["memory_bank"], first["full_context"]),
                         "ttft_on_the_fly_over_full": paired_ratio(first["memory_on_the_fly"], first["full_context"])}
    return row


def check_targets(rows: list, quick: bool = False) -> list:
    """The targets, each judged by `reports.verdict` on its median's interval (met / MISSED / unresolved); the
    median, interval and min-max come with it. The decode change is the memory model's decode rate from a bank at
    the longest context over the shortest's in the same decode round, minus 1: those calls run back to back (their
    prefill is one chunk), so a change in machine load rarely falls between them. At `quick` sizes a target
    (stated for the full sizes) is not judged: `met` is `None` and `status` n/a, the measured value still shown."""
    checks = []

    def add(name, figure, target, tests):
        met, status = verdict(figure, tests, quick)
        checks.append({"name": name, "measured": figure["median"], "interval": figure["interval"],
                       "range": [figure["min"], figure["max"]], "target": target, "met": met, "status": status})

    by_length = {row["context"]: row for row in rows}
    compared = [n for n, row in by_length.items() if "ratios" in row]  # lengths where the full-context Llama ran
    if compared:
        reference = 16384 if 16384 in compared else max(compared)
        row = by_length[reference]
        for key, target in (("ttft_bank_over_full", TARGETS["ttft_bank_over_full_max_at_16384"]),
                            ("ttft_on_the_fly_over_full", TARGETS["ttft_fly_over_full_max_at_16384"])):
            add(f"{key} at {reference}", row["ratios"][key], f"<= {target}", [lambda value: value <= target])
    short, long = by_length[min(by_length)], by_length[max(by_length)]
    ratio = long["decode_over_shortest"]["memory_bank"]
    tolerance = TARGETS["decode_longest_vs_shortest_tolerance"]
    add(f"memory decode tokens/s (from a bank) at {long['context']} vs {short['context']}",
        {**{key: ratio[key] - 1 for key in ("median", "min", "max")}, "interval": [v - 1 for v in ratio["interval"]]},
        f"within +-{tolerance}", [lambda value: value >= -tolerance, lambda value: value <= tolerance])
    return checks


def run(args) -> dict:
    """Every length's candidates in the same interleaved rounds, so ratios across lengths are taken per round."""
    sizes = _sizes(args)
    memory, full_context_llama = build_models(sizes)
    memory.to(args.device)
    with autocast(args.device, args.dtype):
        progress(f"long-context: banks of {', '.join(map(str, sizes.lengths))} tokens")
        cases = [prepare(memory, full_context_llama, sizes, n, args.device) for n in sizes.lengths]
        encode = sample_seconds({case.n: lambda case=case: encode_documents(
            memory, [case.ids[0, : -sizes.chunk_size].tolist()], sizes.encode_batch) for case in cases},
            sizes.repeats, 0, args.device)
        per_case = [generate_calls(memory, case, sizes.new_tokens) for case in cases]
        # Candidate by candidate, each over every length: calls compared across lengths run back to back.
        calls = {(case.n, name): case_calls[name] for name in ("memory_bank", "memory_on_the_fly", "full_context")
                 for case, case_calls in zip(cases, per_case) if name in case_calls}
        progress(f"long-context: {len(calls)} generate calls x ({sizes.warmup} warm-up + {sizes.repeats} rounds)")
        clocks = sample_generation(calls, sizes.repeats, sizes.warmup, args.device, label="long-context")
        # The decode rounds: the cheap bank calls of every length back to back, many times (decode flatness).
        clocks.update({(n, "memory_decode"): values for (n, _), values in sample_generation(
            {key: call for key, call in calls.items() if key[1] == "memory_bank"}, sizes.decode_repeats, 0,
            args.device, label="long-context decode").items()})
        shortest = {"memory_bank": clocks[(cases[0].n, "memory_decode")],
                    "memory_on_the_fly": clocks[(cases[0].n, "memory_on_the_fly")]}
        rows = [length_row(memory, case, {name: values for (n, name), values in clocks.items() if n == case.n},
                           shortest, encode[case.n], sizes) for case in cases]
    samples = {"generation": f"{sizes.warmup} warm-up + {sizes.repeats} timed generate calls per candidate and "
                             f"length; each round runs the bank calls at every length, then the on-the-fly ones, "
                             f"then the full-context ones; one sample = one call: "
                             f"prefill to the first token, then {sizes.new_tokens - 1} decode steps timed token by "
                             f"token",
               "decode": f"{sizes.decode_repeats} rounds of the bank calls at every length back to back; the memory "
                         f"model's decode rate from a bank and its change with the length come from these",
               "encode": f"{sizes.repeats} timed encodes of the context's complete chunks but the last per length, "
                         f"alternating"}
    return {"benchmark": "long-context", "settings": settings(args, sizes, samples=samples), "rows": rows,
            "targets": check_targets(rows, quick=args.quick)}


def _fmt(figure, unit: str = "") -> str:
    if figure is None:
        return "skipped"
    if unit == "ms":
        return fmt_spread(figure, 1e3, lambda value: f"{value:.1f}")
    return fmt_spread(figure)


def format_table(result: dict) -> str:
    s = result["settings"]
    z = s["sizes"]
    lines = [
        f"long-context benchmark: {s['device']}, {s['threads']} threads; memory model d={z['decoder_hidden']} "
        f"(encoder d={z['encoder_hidden']}), {z['num_layers']} layers, chunk {z['chunk_size']} x "
        f"{z['num_memory_slots']} slots, rolling window; full-context Llama with the decoder's weights; "
        f"median (min-max) over {z['repeats']} calls each ({z['decode_repeats']} for the decode from a bank), "
        f"{z['new_tokens']} new tokens per call",
        "",
        "| context | TTFT bank ms | TTFT on the fly ms | TTFT full ms | bank/full | fly/full | decode tok/s bank "
        "| decode tok/s on the fly | decode tok/s full | KV bytes memory | KV bytes full | encode tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ttft, decode, kv = row["ttft_s"], row["decode_tokens_per_s"], row["kv_cache_bytes"]
        ratios = row.get("ratios", {})
        lines.append(
            f"| {row['context']} | {_fmt(ttft['memory_bank'], 'ms')} | {_fmt(ttft['memory_on_the_fly'], 'ms')} | "
            f"{_fmt(ttft.get('full_context'), 'ms')} | {_fmt(ratios.get('ttft_bank_over_full'))} | "
            f"{_fmt(ratios.get('ttft_on_the_fly_over_full'))} | {_fmt(decode['memory_bank'])} | "
            f"{_fmt(decode['memory_on_the_fly'])} | "
            f"{_fmt(decode.get('full_context'))} | {kv['memory']:,} | "
            f"{'skipped' if 'full_context' not in kv else format(kv['full_context'], ',')} | "
            f"{_fmt(row['encode_tokens_per_s'])} |"
        )
    lines += ["", "targets (met / MISSED when the median's confidence interval is on one side of the threshold, "
              "unresolved when it straddles it; n/a: stated for the full sizes, not judged at --quick sizes):"]
    for check in result["targets"]:
        (low, high), (least, most) = check["interval"], check["range"]
        lines.append(f"  [{check['status']:>10}] {check['name']}: {check['measured']:.3g} (median interval "
                     f"{low:.3g} to {high:.3g}, min-max {least:.3g} to {most:.3g}; target {check['target']})")
    longest = result["rows"][-1]["decode_over_shortest"]["memory_on_the_fly"]
    low, high = (value - 1 for value in longest["interval"])
    lines.append(f"  (not a target) memory decode tokens/s on the fly at {result['rows'][-1]['context']} vs "
                 f"{result['rows'][0]['context']}: {longest['median'] - 1:.3g} (median interval {low:.3g} to "
                 f"{high:.3g}, min-max {longest['min'] - 1:.3g} to {longest['max'] - 1:.3g}); each of these calls "
                 f"follows its own prefill")
    lines.append(f"samples: {s['samples']['generation']}; {s['samples']['decode']}; {s['samples']['encode']}")
    return "\n".join(lines)
