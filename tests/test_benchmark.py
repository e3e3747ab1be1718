"""The benchmark CLI: quick runs produce complete JSON; the paper's sequential loop equals the batched model."""

import json
import queue

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eval.benchmarks import cli as benchmark
from eval.benchmarks import memory
from eval.benchmarks.checkpointing import QUICK, _step
from eval.benchmarks.models import sequential_paper_loss
from eval.benchmarks.reports import check_targets
from eval.benchmarks.timing import cache_bytes
from modeling_memory import MemoryConfig, MemoryForCausalLM

QUICK_ARGS = ["--quick", "--repeats", "1"]


def run_quick(name: str, tmp_path, capsys) -> tuple[dict, str]:
    output = tmp_path / f"{name}.json"
    assert benchmark.main([name, *QUICK_ARGS, "--output", str(output)]) == 0
    return json.loads(output.read_text()), capsys.readouterr().out


def _positive_numbers(tree) -> list:
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in _positive_numbers(value)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_memory_quick_run_writes_complete_json(tmp_path, capsys):
    """`memory --quick` prints the table and writes every measurement as a positive number."""
    result, stdout = run_quick("memory", tmp_path, capsys)
    assert result["benchmark"] == "memory" and result["settings"]["quick"] is True
    sizes = memory.QUICK
    assert [row["context"] for row in result["training"]] == list(sizes.train_contexts)
    first = result["training"][0]["tokens_per_s"]
    assert set(first) == {"memory_batched", "memory_sequential", "llama_full_context", "recurrent_memory"}
    for row in result["training"]:
        assert {"memory_batched", "llama_full_context"} <= set(row["tokens_per_s"])
        assert all(x > 0 for x in _positive_numbers(row["tokens_per_s"]) + _positive_numbers(row["speedup_of_batched"]))
    assert [row["context"] for row in result["inference"]] == list(sizes.inference_contexts)
    for row in result["inference"]:
        for model in ("memory", "llama_full_context"):
            assert set(row[model]) == {"prefill_s", "decode_tokens_per_s", "kv_cache_bytes"}
            assert all(x > 0 for x in _positive_numbers(row[model]))
        assert row["memory"]["kv_cache_bytes"] < row["llama_full_context"]["kv_cache_bytes"]
    assert result["targets"] and all({"target", "measured", "threshold", "met"} <= set(t) for t in result["targets"])
    assert "(a) training step" in stdout and "(b) inference" in stdout and "targets" in stdout
    # The targets are stated for the full sizes: not applicable (not MISSED) at quick sizes.
    assert {(t["status"], t["met"]) for t in result["targets"]} == {("n/a", None)}
    assert "[   n/a]" in stdout and "MISSED" not in stdout
    svg = (tmp_path / "memory.svg").read_text() if (tmp_path / "memory.svg").exists() else pytest.skip("no matplotlib")
    assert (tmp_path / "memory.png").is_file()
    for label in ("prefill (time to first token, s)", "decode (tokens/s)", "KV-cache (bytes)", "training tokens/s",
                  "memory model", "full-context Llama", "--quick"):
        assert label in svg, label


def test_full_size_targets_are_judged_outside_quick_mode():
    """Without --quick the same measurements are met or MISSED, never n/a."""
    training = [{"context": 1024, "speedup_of_batched": {"vs_memory_sequential": 1.1, "vs_llama_full_context": 1.2}}]
    inference = [{"context": 4096, "ratios": {"prefill_memory_over_llama": 0.3, "decode_memory_over_llama": 2.0,
                                              "kv_bytes_memory_over_llama": 0.5, "kv_bytes_expected_ratio": 0.0664}}]
    full = {t["target"]: t["status"] for t in check_targets(training, inference)}
    assert list(full.values()) == ["MISSED", "met", "met", "met", "MISSED"], full
    quick = check_targets(training, inference, quick=True)
    assert [(t["status"], t["measured"]) for t in quick] == [("n/a", t["measured"]) for t in quick] and len(quick) == 5


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
    from eval.benchmarks.arguments import BENCHMARKS, benchmark_parser

    assert set(BENCHMARKS) == set(benchmark.WORKLOADS)
    for name in BENCHMARKS:
        args = benchmark_parser().parse_args([name, "--quick"])
        assert (args.benchmark, args.quick, args.device, args.dtype) == (name, True, "cpu", "fp32")


def test_autoencoder_quick_run_writes_complete_json(tmp_path, capsys):
    """`autoencoder --quick` (wired from eval/benchmarks/autoencoder.py) reports positive timings."""
    result, stdout = run_quick("autoencoder", tmp_path, capsys)
    assert result["benchmark"] == "autoencoder"
    for key in ("gather_ms", "loop_ms", "speedup"):
        assert result["unroll"][key] > 0
    for key in ("mixer_tokens_per_s", "llama_tokens_per_s", "mixer_over_llama"):
        assert result["mixer_vs_llama"][key] > 0
    assert "unroll" in stdout and "mixer" in stdout


def test_banks_quick_run_reports_throughput_rss_and_ttft(tmp_path, capsys, monkeypatch):
    """`banks --quick` writes the throughput, peak-RSS and TTFT tables. Here each encode runs the benchmark's
    worker in this process (1 process whatever the layout; the multi-process encoder is tested in
    test_bank_distributed.py), so the test checks the wiring, the banks it reads and the tables."""
    from eval.benchmarks import banks

    def in_process(work, corpus, sizes, processes, threads, device):
        output, stats = tmp_path / f"bank-{len(list(tmp_path.glob('bank-*')))}", tmp_path / "stats.json"
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
    for checkpointing in (False, True):
        box = queue.Queue()
        _step(QUICK, checkpointing, box)
        results[checkpointing] = box.get()
    assert results[True]["saved_bytes"] < 0.5 * results[False]["saved_bytes"]
    torch.testing.assert_close(torch.tensor(results[True]["grad_norms"]), torch.tensor(results[False]["grad_norms"]))
