"""The benchmark CLI: quick runs produce complete JSON whose timed figures are medians with their min-max; the
decode clock times the decode steps alone; the paper's sequential loop equals the batched model."""

import itertools
import json
import math
import os
import platform
import queue
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmark_checks import assert_spreads
from memory_models.eval.benchmarks import cli as benchmark
from memory_models.eval.benchmarks import allocator, checkpointing, convert, long_context, memory
from memory_models.eval.benchmarks.models import sequential_paper_loss
from memory_models.eval.benchmarks.reports import check_targets, verdict
from memory_models.eval.benchmarks.timing import (DecodeClock, cache_bytes, interleave, paired_ratio, ratio_bounds,
                                    sample_generation, spread)
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM

REPEATS = 2
QUICK_ARGS = ["--quick", "--repeats", str(REPEATS), "--threads", "2"]


def _positive_numbers(tree) -> list:
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in _positive_numbers(value)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def run_quick(name: str, tmp_path, capsys, *extra) -> tuple[dict, str]:
    output = tmp_path / f"{name}.json"
    assert benchmark.main([name, *QUICK_ARGS, *extra, "--output", str(output)]) == 0
    return json.loads(output.read_text()), capsys.readouterr().out


def test_memory_quick_run_writes_complete_json(tmp_path, capsys):
    """`memory --quick --repeats 2` prints the tables and writes every timed figure as a median with its min-max
    over 2 runs; the decode clock counted new_tokens - 1 steps; the load average is recorded."""
    result, stdout = run_quick("memory", tmp_path, capsys)
    assert result["benchmark"] == "memory" and result["settings"]["quick"] is True
    assert result["settings"]["threads"] == 2 and len(result["settings"]["load_average"]) == 2
    assert set(result["settings"]["samples"]) == {"training", "inference"}
    sizes = memory.QUICK
    assert [row["context"] for row in result["training"]] == list(sizes.train_contexts)
    first = result["training"][0]["tokens_per_s"]
    assert set(first) == {"memory_batched", "memory_sequential", "llama_full_context", "recurrent_memory"}
    assert [row["context"] for row in result["inference"]] == list(sizes.inference_contexts)
    for row in result["inference"]:
        for model in ("memory", "llama_full_context"):
            assert set(row[model]) == {"prefill_s", "decode_tokens_per_s", "decode_steps", "kv_cache_bytes"}
            assert row[model]["decode_steps"] == sizes.new_tokens - 1
        assert 0 < row["memory"]["kv_cache_bytes"] < row["llama_full_context"]["kv_cache_bytes"]
    figures = assert_spreads(result, REPEATS, {
        "/tokens_per_s/memory_batched", "/tokens_per_s/memory_sequential", "/tokens_per_s/llama_full_context",
        "/tokens_per_s/recurrent_memory", "/speedup_of_batched/vs_memory_sequential",
        "/speedup_of_batched/vs_llama_full_context", "/memory/prefill_s", "/memory/decode_tokens_per_s",
        "/llama_full_context/prefill_s", "/llama_full_context/decode_tokens_per_s",
        "/ratios/prefill_memory_over_llama", "/ratios/decode_memory_over_llama"})
    assert len(figures) == (4 + 3) + (2 + 1) + 2 * (2 + 2 + 2)  # every training and inference figure, no other
    assert result["targets"] and all({"target", "measured", "threshold", "met"} <= set(t) for t in result["targets"])
    for check in result["targets"]:  # a timed ratio carries its interval and range, a byte ratio neither
        assert ("range" in check) == ("interval" in check) == (not check["target"].startswith("KV")), check
    assert "(a) training step" in stdout and "(b) inference" in stdout and "targets" in stdout
    assert "median (min-max)" in stdout and "1-minute load average" in stdout
    # The targets are stated for the full sizes: not applicable (not MISSED) at quick sizes.
    assert {(t["status"], t["met"]) for t in result["targets"]} == {("n/a", None)}
    assert "[       n/a]" in stdout and "[    MISSED]" not in stdout and "[       met]" not in stdout
    svg = (tmp_path / "memory.svg").read_text() if (tmp_path / "memory.svg").exists() else pytest.skip("no matplotlib")
    assert (tmp_path / "memory.png").is_file()
    for label in ("prefill (time to first token, s)", "decode (tokens/s)", "KV-cache (bytes)", "training tokens/s",
                  "memory model", "full-context Llama", "--quick", "median, bars min-max"):
        assert label in svg, label


def test_full_size_targets_are_judged_outside_quick_mode():
    """Without --quick a target is met or MISSED when the median's whole interval is on one side of the threshold,
    unresolved when the interval straddles it (whatever side the median is on), never n/a."""
    training = [{"context": 1024, "speedup_of_batched": {"vs_memory_sequential": spread([1.1, 1.0, 1.4]),
                                                         "vs_llama_full_context": spread([1.2, 1.1, 1.3])}}]
    inference = [{"context": 4096, "ratios": {"prefill_memory_over_llama": spread([0.3, 0.6, 0.2]),
                                              "decode_memory_over_llama": spread([1.4]),
                                              "kv_bytes_memory_over_llama": 0.5, "kv_bytes_expected_ratio": 0.0664}}]
    checks = check_targets(training, inference)
    assert [(t["status"], t["met"]) for t in checks] == [("unresolved", False), ("met", True), ("unresolved", True),
                                                         ("MISSED", False), ("MISSED", False)], checks
    assert [t.get("range") for t in checks] == [[1.0, 1.4], [1.1, 1.3], [0.2, 0.6], [1.4, 1.4], None]
    assert [t["measured"] for t in checks[:3]] == [1.1, 1.2, 0.3]
    quick = check_targets(training, inference, quick=True)
    assert [(t["status"], t["met"], t["measured"]) for t in quick] == [("n/a", None, t["measured"]) for t in checks]


def test_verdict_reads_the_median_interval():
    """With 10 runs the interval is the 2nd smallest to the 2nd largest: one outlier on either side cannot decide
    a target, two on the same side leave it unresolved; a band target (two tests) is MISSED only when one of its
    sides fails at both ends."""
    runs = [1.0] * 8 + [0.5, 2.0]
    assert spread(runs)["interval"] == [1.0, 1.0]
    assert verdict(spread(runs), [lambda v: v >= 0.9]) == (True, "met")
    assert verdict(spread([1.0] * 8 + [0.5, 0.6]), [lambda v: v >= 0.9]) == (True, "unresolved")
    band = [lambda v: v >= -0.1, lambda v: v <= 0.1]
    assert verdict(spread([0.2, 0.3, 0.25]), band) == (False, "MISSED")
    assert verdict(spread([-0.2, 0.0, 0.2]), band) == (True, "unresolved")
    assert verdict(0.05, band) == (True, "met") and verdict(0.05, band, quick=True) == (None, "n/a")


def test_long_context_decode_target_is_judged_per_round():
    """The decode-flatness target reads the longest context's decode rate from a bank over the shortest's, taken
    per round: its median minus 1 is judged, its min-max reported; the TTFT targets read the 16k row's per-round
    ratios."""
    def row(context, decode_ratio, ratios=None):
        return {"context": context, "decode_over_shortest": {"memory_bank": spread(decode_ratio),
                                                             "memory_on_the_fly": spread([5.0])},
                **({"ratios": ratios} if ratios else {})}

    ttft = {"ttft_bank_over_full": spread([0.01, 0.02, 0.06]), "ttft_on_the_fly_over_full": spread([0.2, 0.15, 0.1])}
    rows = [row(4096, [1.0, 1.0, 1.0]), row(16384, [0.5, 0.6, 0.7], ttft), row(32768, [0.94, 0.8, 1.2])]
    bank, fly, decode = long_context.check_targets(rows)
    assert (bank["name"], bank["measured"], bank["range"], bank["status"]) == ("ttft_bank_over_full at 16384", 0.02,
                                                                               [0.01, 0.06], "unresolved")
    assert (fly["measured"], fly["interval"], fly["status"]) == (0.15, [0.1, 0.2], "met")
    assert decode["name"] == "memory decode tokens/s (from a bank) at 32768 vs 4096"
    assert (decode["met"], decode["status"]) == (True, "unresolved")
    torch.testing.assert_close(decode["measured"], 0.94 - 1)
    torch.testing.assert_close(decode["range"], [0.8 - 1, 1.2 - 1])
    rows[-1] = row(32768, [0.95, 0.97, 1.05])
    assert long_context.check_targets(rows)[-1]["status"] == "met"
    rows[-1] = row(32768, [0.8, 0.85, 0.88])
    assert long_context.check_targets(rows)[-1]["status"] == "MISSED"
    assert {t["status"] for t in long_context.check_targets(rows, quick=True)} == {"n/a"}


def test_spread_and_ratios():
    """A figure is the median and the min-max of its runs; paired ratios are taken round by round; ratios of
    figures measured apart are bounded by their extremes."""
    assert spread([3, 1, 2, 10]) == {"median": 2.5, "min": 1.0, "max": 10.0, "interval": [1.0, 10.0], "runs": 4}
    assert spread(range(1, 11))["interval"] == [2.0, 9.0] and spread(range(1, 21))["interval"] == [6.0, 15.0]
    assert paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]) == spread([2.0, 3.0, 1.0])
    assert ratio_bounds(spread([4.0, 6.0]), spread([1.0, 2.0])) == {"median": 5.0 / 1.5, "min": 2.0, "max": 6.0,
                                                                     "interval": [2.0, 6.0], "runs": 2}
    with pytest.raises(ValueError, match="at least one repeat"):
        spread([])
    with pytest.raises(ValueError, match="paired ratio of 2 and 1"):
        paired_ratio([1.0, 2.0], [1.0])


def test_interleave_alternates_candidates_after_their_warmup():
    """Warm-up calls of each candidate first, then rounds a, b, a, b; each sample is what the call returned."""
    order = []
    samples = interleave({"a": lambda: order.append("a") or len(order), "b": lambda: order.append("b") or len(order)},
                         repeats=2, warmup=1)
    assert order == ["a", "b", "a", "b", "a", "b"] and samples == {"a": [3, 5], "b": [4, 6]}
    with pytest.raises(ValueError, match="repeats=0"):
        interleave({"a": lambda: None}, repeats=0, warmup=0)


def test_decode_clock_times_the_decode_steps_only():
    """Inside one `generate`, the clock sees the prompt and each new token: new_tokens - 1 decode steps, a decode
    rate over the time from the first new token to the last (the prefill is excluded) and TTFT from the call."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=1)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(2, 99, (1, 10))
    call = lambda streamer: model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False,  # noqa: E731
                                           pad_token_id=1, streamer=streamer)
    (clock, other), = sample_generation({"llama": call}, repeats=2, warmup=0, device="cpu").values()
    assert len(clock.times) == 6 and clock.decode_steps == 4 and other.decode_steps == 4
    assert clock.start < clock.times[0] <= clock.times[1] <= clock.times[-1] < other.start
    assert clock.decode_tokens_per_s() == 4 / (clock.times[-1] - clock.times[1])
    assert clock.first_token_s() == clock.times[1] - clock.start and clock.total_s() == clock.times[-1] - clock.start
    fake = DecodeClock()  # a 10 s prefill and two 1 s steps: 1 token/s, whatever the prefill took
    fake.start, fake.times = 0.0, [0.5, 10.0, 11.0, 12.0]
    assert (fake.first_token_s(), fake.decode_tokens_per_s(), fake.total_s()) == (10.0, 1.0, 12.0)
    fake.times = [0.5, 10.0]
    with pytest.raises(ValueError, match="at least 2 new tokens"):
        fake.decode_tokens_per_s()


@pytest.mark.parametrize("name", ["memory", "long-context"])
def test_one_new_token_has_no_decode_rate(name, tmp_path):
    """--new-tokens 1 leaves no token after the first to time: a ValueError naming the option, before any work."""
    with pytest.raises(ValueError, match="--new-tokens must be at least 2.*got 1"):
        benchmark.main([name, "--quick", "--new-tokens", "1", "--output", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def _tiny_memory_model(compression: int = 1) -> MemoryForCausalLM:
    def llama(hidden, positions):
        return LlamaConfig(vocab_size=99, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                           num_attention_heads=2, max_position_embeddings=positions, pad_token_id=1,
                           bos_token_id=0, eos_token_id=1)

    config = MemoryConfig(llama(16, 8), llama(32, 12), chunk_size=8, num_memory_slots=4, compression=compression,
                          paper_chunk_targets=True, loss_reduction="paper")
    return MemoryForCausalLM(config)


@pytest.mark.parametrize("compression", [1, 2])
def test_sequential_reference_equals_batched_paper_loss(compression):
    """The paper's per-chunk loop (s-1 encoder, s decoder calls) gives the batched model's paper-mode loss and grads."""
    torch.manual_seed(0)
    model = _tiny_memory_model(compression)
    ids = torch.randint(2, 99, (3, 32))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(sequential_paper_loss(model, ids), model(ids, labels=ids).loss)
    model.train()
    model(ids, labels=ids).loss.backward()
    batched = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    sequential_paper_loss(model, ids).backward()
    sequential = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert batched.keys() == sequential.keys()
    for name, grad in batched.items():
        torch.testing.assert_close(sequential[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_cache_bytes_counts_keys_and_values():
    """KV bytes of a Llama generate cache = 2 x layers x batch x kv heads x cached tokens x head dim x 4."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=1)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(2, 99, (2, 10))
    out = model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=1,
                         return_dict_in_generate=True)
    assert cache_bytes(out.past_key_values) == 2 * 2 * 2 * 2 * 14 * 16 * 4
    assert cache_bytes(None) == 0


def test_every_benchmark_has_a_workload_and_options():
    """The light parser (what `--help` reads) and the workload table name the same benchmarks."""
    from memory_models.eval.benchmarks.arguments import BENCHMARKS, benchmark_parser

    assert set(BENCHMARKS) == set(benchmark.WORKLOADS)
    for name in BENCHMARKS:
        args = benchmark_parser().parse_args([name, "--quick"])
        assert (args.benchmark, args.quick, args.device, args.dtype) == (name, True, "cpu", "fp32")


def test_autoencoder_quick_run_writes_complete_json(tmp_path, capsys):
    """`autoencoder --quick` (wired from eval/benchmarks/autoencoder.py) reports every timing as a median with its
    min-max, and how many calls make one sample."""
    result, stdout = run_quick("autoencoder", tmp_path, capsys)
    assert result["benchmark"] == "autoencoder" and set(result["settings"]["samples"]) == {"unroll", "mixer_vs_llama"}
    assert result["unroll"]["calls_per_sample"] == {"gather": 1, "loop": 1}  # --quick: no calibration
    figures = assert_spreads(result, REPEATS, {"/gather_ms", "/loop_ms", "/speedup", "/mixer_tokens_per_s",
                                               "/llama_tokens_per_s", "/mixer_over_llama"})
    assert len(figures) == 6
    assert "unroll" in stdout and "mixer" in stdout and "median (min-max)" in stdout


def test_objectives_quick_run_times_both_settings_of_every_case(tmp_path, capsys):
    """`objectives --quick`: every case (both families x blank copy, copy, combined, clm) is timed with the decoder
    on the chunks with targets only and on every chunk, as spreads; copy rows skip their first half (the presets'
    copy delimiter has no target, so neither has the first half's last position), causal rows skip nothing."""
    result, stdout = run_quick("objectives", tmp_path, capsys)
    cases = result["cases"]
    assert [(case["preset"], case["objective"]) for case in cases] == [
        (preset, objective) for preset in ("memory-transformer-tiny", "memory-mixer-tiny")
        for objective in ("blank_copy", "copy", "combined", "clm")]
    figures = assert_spreads(result, REPEATS, {"/speedup", "/steps_per_s/only chunks with targets",
                                               "/steps_per_s/every chunk"})
    assert len(figures) == 3 * len(cases)
    for case in cases:
        rows, chunks = case["batch_rows"], case["chunks"]
        slots = chunks // rows
        assert chunks == rows * slots and slots >= 4
        copy_rows = {"blank_copy": rows, "copy": rows, "combined": rows // 2, "clm": 0}[case["objective"]]
        skipped = copy_rows * slots // 2
        assert case["chunks_decoded"] == chunks - skipped, case
    assert "| memory-mixer-tiny | copy | frozen |" in stdout


def test_conversion_peak_memory_is_the_child_own(tmp_path):
    """A conversion run's peak RSS is the child's own (`VmHWM` after exec): a child allocating 20 MiB reports well
    under this test process's resident memory, one allocating 300 MiB reports more than that; a failing child is
    a RuntimeError with its stderr."""
    (tmp_path / "allocate.py").write_text("import sys\nblock = bytearray(int(sys.argv[1]) * 2**20)\n"
                                          "block[::4096] = b'x' * len(block[::4096])\n"
                                          "if len(sys.argv) > 2:\n    raise SystemExit('boom')\n")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path)}
    (small_s, small), (large_s, large) = (convert.run_with_peak_rss("allocate", [mib], env) for mib in ("20", "300"))
    assert 20 * 2**20 < small < 100 * 2**20 < 300 * 2**20 < large < 400 * 2**20 and small_s > 0 and large_s > 0
    with pytest.raises(RuntimeError, match="(?s)allocate failed:.*boom"):
        convert.run_with_peak_rss("allocate", ["1", "fail"], env)


def test_lora_vs_full_quick_reports_each_step():
    """LoRA vs full fine-tuning at --quick sizes: one step per sample, medians with their min-max, the LoRA/full
    ratio bounded by the extremes (the modes run one after the other)."""
    result = convert.bench_lora_vs_full(quick=True, repeats=2, warmup=0)
    assert_spreads(result, 2, {"/full_tokens_per_s", "/lora_tokens_per_s", "/lora_over_full"})
    full, lora, ratio = result["full_tokens_per_s"], result["lora_tokens_per_s"], result["lora_over_full"]
    assert ratio == ratio_bounds(lora, full) and ratio["min"] <= lora["median"] / full["median"] <= ratio["max"]
    assert result["lora_trainable_params"] < result["full_trainable_params"]


def test_banks_quick_run_reports_throughput_rss_and_ttft(tmp_path, capsys, monkeypatch):
    """`banks --quick` writes the throughput, peak-RSS and TTFT tables. Here each encode runs the benchmark's
    worker in this process (1 process whatever the layout; the multi-process encoder is tested in
    test_bank_distributed.py), so the test checks the wiring, the banks it reads and the tables."""
    from memory_models.eval.benchmarks import banks

    runs = itertools.count()

    def in_process(work, corpus, sizes, processes, threads, device):  # a new folder per run, as mkdtemp gives
        output, stats = tmp_path / f"bank-{next(runs)}", tmp_path / "stats.json"
        assert banks._worker(["--model", str(work / "model"), "--corpus", str(corpus), "--output", str(output / "bank"),
                              "--shard-size", str(sizes.shard_size), "--batch-size", str(sizes.batch_size),
                              "--threads", str(threads), "--device", device, "--stats", str(stats)]) == 0
        return {**json.loads(stats.read_text()), "bank": str(output / "bank"), "load_average": [None]}

    monkeypatch.setattr(banks, "_encode", in_process)
    result, stdout = run_quick("banks", tmp_path, capsys)
    assert [(r["processes"], r["threads_per_process"]) for r in result["throughput"]] == [(1, 1), (1, 2), (2, 1)]
    assert [row["documents"] for row in result["banks"]] == [20, 40]
    assert [row["shards"] for row in result["banks"]] == [5, 10]
    assert all(x > 0 for x in _positive_numbers(result["banks"]) + _positive_numbers(result["throughput"]))
    assert result["ttft_flat_within_20_percent"] is None and result["ttft_largest_over_smallest"] > 0
    assert "| processes | threads per process | tokens/s |" in stdout and "| TTFT ms |" in stdout


def test_checkpointing_step_saves_less_for_the_same_gradients():
    """The checkpointing workload's training step (run here in-process, not in fresh processes): with gradient
    checkpointing the mixer keeps fewer bytes for the backward and gets the same gradients."""
    results = {}
    for enabled in (False, True):
        box = queue.Queue()
        checkpointing._step(checkpointing.QUICK, enabled, box)
        results[enabled] = box.get()
    assert results[True]["saved_bytes"] < 0.5 * results[False]["saved_bytes"]
    torch.testing.assert_close(torch.tensor(results[True]["grad_norms"]), torch.tensor(results[False]["grad_norms"]))


def test_checkpointing_measure_spreads_the_timed_figures(monkeypatch):
    """`measure` alternates the settings over the repeats (steps run in-process here instead of fresh processes):
    seconds and peak RSS increase are spreads over them, the saved bytes one exact number, checked equal."""
    def in_process(context, sizes, enabled):
        box = queue.Queue()
        checkpointing._step(sizes, enabled, box)
        return box.get()

    monkeypatch.setattr(checkpointing, "_fresh_step", in_process)
    result = checkpointing.measure(checkpointing.QUICK, repeats=2)
    for name in ("without", "with"):
        assert set(result[name]) == {"saved_bytes", "seconds", "peak_rss_increase_bytes"}
        assert result[name]["seconds"]["runs"] == result[name]["peak_rss_increase_bytes"]["runs"] == 2
        assert result[name]["seconds"]["min"] <= result[name]["seconds"]["median"] <= result[name]["seconds"]["max"]
    assert result["same_gradients"] is True and result["saved_ratio"] < 0.5
    assert "median (min-max) over 2 processes" in checkpointing.format_checkpointing({"checkpointing": result})


def test_kept_memory_takes_fewer_page_faults_for_the_same_loss():
    """`keep_freed_memory` (glibc): once warmed up, training steps of the small memory transformer (batch 8, a fresh
    process per setting) fault far fewer pages in than with glibc's defaults, which fault each step's memory in
    again, and end on the same loss bit for bit; elsewhere it reports that it changed nothing."""
    case = allocator.CASES[0]
    defaults, kept = (allocator.in_fresh_process(case, 8, 10, 5, 1, keep) for keep in (False, True))
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert kept["kept"] is glibc and defaults["kept"] is False
    assert kept["loss"] == defaults["loss"]  # the same arithmetic
    if glibc:
        assert kept["page_faults_per_step"] < defaults["page_faults_per_step"] / 4, (defaults, kept)


def test_allocator_quick_run_times_both_settings_in_fresh_processes(tmp_path, capsys):
    """`allocator --quick`: each setting timed in its own process per round, as spreads of ms and page faults per
    step with the per-round speed-up; both settings end on the same loss (checked by the run)."""
    result, stdout = run_quick("allocator", tmp_path, capsys, "--threads", "1", "--repeats", "1")  # 2 processes
    (case,) = result["cases"]
    assert (case["preset"], case["objective"]) == ("memory-transformer-tiny", "combined")
    figures = assert_spreads(result, 1, {"/speedup", "/seconds_per_step/glibc defaults",
                                         "/seconds_per_step/freed memory kept", "/page_faults_per_step/glibc defaults",
                                         "/page_faults_per_step/freed memory kept"})
    assert len(figures) == 5 and result["settings"]["threads"] == 1
    assert math.isfinite(case["loss"]) and "| memory-transformer-tiny | combined |" in stdout
