"""Memory-bank benchmark: `python -m memory_models.eval.benchmarks banks [--quick] [--documents 1000 10000 100000]`.

One small memory model (saved to a work folder with a word-level tokenizer) and a synthetic JSON-lines corpus
whose first `n` documents are the corpus of size `n`; every encode runs in fresh processes, streaming the file:

* encode throughput: tokens/s of `encode_bank` (model loading and process start excluded) for each layout of
  processes x threads per process (1 x 1, 1 x 2 and 2 x 1 on CPU; torchrun with gloo for 2 processes);
* peak RSS of the encoding process (`ru_maxrss`) for banks of 1k, 10k and 100k documents: it must stay flat;
* time to first token against the bank's size: open the bank (manifest, memory-mapped index, fingerprint
  check), read one document (its shard hashed and memory-mapped) and generate one token, for documents drawn
  uniformly from the whole bank, the banks taking turns (warm page cache); it must stay flat within 20%.

Each number is the median and the min-max over `--repeats` runs (encodes interleave the layouts).
Run as `python -m memory_models.eval.benchmarks.banks ...` (or under torchrun), this module is one encoding process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate import PartialState

from memory_models.eval.banks.bank import load_memory_bank, load_model_and_tokenizer
from memory_models.eval.banks.encode import Ranks, encode_bank, open_corpus
from memory_models.eval.benchmarks.models import llama_config
from memory_models.eval.benchmarks.timing import load_average, progress, settings
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM

TTFT_TOLERANCE = 0.20  # the largest bank's median TTFT within 20% of the smallest's


@dataclass
class BankSizes:
    vocab_size: int = 512
    encoder_hidden: int = 64
    decoder_hidden: int = 64
    num_layers: int = 2
    num_heads: int = 2
    chunk_size: int = 8
    num_memory_slots: int = 8
    min_tokens: int = 16
    max_tokens: int = 48
    documents: tuple = (1000, 10000, 100000)
    throughput_documents: int = 10000
    shard_size: int = 256
    batch_size: int = 64
    reads: int = 40
    warmup: int = 1
    repeats: int = 3


QUICK = BankSizes(vocab_size=64, encoder_hidden=16, decoder_hidden=16, chunk_size=4, num_memory_slots=4,
                  min_tokens=4, max_tokens=12, documents=(20, 40), throughput_documents=20, shard_size=4,
                  batch_size=8, reads=3, warmup=0, repeats=1)


def _sizes(args) -> BankSizes:
    sizes = QUICK if args.quick else BankSizes()
    for name in ("documents", "throughput_documents", "shard_size", "repeats", "warmup"):
        value = getattr(args, name, None)
        if value is not None:
            sizes = replace(sizes, **{name: tuple(value) if name == "documents" else value})
    return sizes


# ----------------------------------------------------------------------------- fixtures
def word_tokenizer(vocab_size: int):
    """A word-level tokenizer of `vocab_size` ids: <bos>=0, <pad>=eos=1, <unk>=2, then w3, w4, ... (offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<pad>": 1, "<unk>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<pad>",
                                   pad_token="<pad>", unk_token="<unk>")


def _save_model(sizes: BankSizes, folder: Path) -> None:
    torch.manual_seed(0)
    config = MemoryConfig(
        encoder_config=llama_config(sizes, sizes.encoder_hidden, sizes.chunk_size),
        decoder_config=llama_config(sizes, sizes.decoder_hidden, sizes.num_memory_slots + sizes.chunk_size),
        chunk_size=sizes.chunk_size, num_memory_slots=sizes.num_memory_slots, memory_window="rolling",
        pad_token_id=1, bos_token_id=0, eos_token_id=1)
    MemoryForCausalLM(config).save_pretrained(folder)
    word_tokenizer(sizes.vocab_size).save_pretrained(folder)


def _write_corpus(sizes: BankSizes, path: Path, count: int) -> None:
    """`count` documents of `min_tokens`..`max_tokens` random words; a corpus is a prefix of any larger one."""
    rng = random.Random(0)
    with open(path, "w") as handle:
        for _ in range(count):
            words = [f"w{rng.randrange(3, sizes.vocab_size)}" for _ in range(rng.randint(sizes.min_tokens,
                                                                                          sizes.max_tokens))]
            handle.write(json.dumps({"text": " ".join(words)}) + "\n")


# ----------------------------------------------------------------------------- measurements
def _encode(work: Path, corpus: Path, sizes: BankSizes, processes: int, threads: int, device: str) -> dict:
    """One `encode_bank` run in fresh processes (this module as the worker); its stats."""
    output, stats = Path(tempfile.mkdtemp(dir=work, prefix="bank-")), work / "stats.json"
    worker = ["-m", "memory_models.eval.benchmarks.banks", "--model", str(work / "model"), "--corpus", str(corpus),
              "--output",
              str(output / "bank"), "--shard-size", str(sizes.shard_size), "--batch-size", str(sizes.batch_size),
              "--threads", str(threads), "--device", device, "--stats", str(stats)]
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    load = [load_average()]
    proc = subprocess.run([sys.executable, *launcher, *worker], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the encoding worker failed ({processes} x {threads}):\n{proc.stderr[-3000:]}")
    return {**json.loads(stats.read_text()), "bank": str(output / "bank"), "load_average": load + [load_average()]}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _throughput(work: Path, sizes: BankSizes, device: str) -> list[dict]:
    corpus = work / f"corpus-{sizes.throughput_documents}.jsonl"
    layouts = [(1, 1), (1, 2), (2, 1)] if device == "cpu" else [(1, 1), (torch.cuda.device_count(), 1)]
    runs = {layout: [] for layout in layouts}
    for repeat in range(sizes.repeats):
        for processes, threads in layouts:
            progress(f"encode {sizes.throughput_documents} documents, {processes} x {threads} (run {repeat + 1})")
            run = _encode(work, corpus, sizes, processes, threads, device)
            shutil.rmtree(Path(run["bank"]).parent)
            runs[(processes, threads)].append(run)
    return [{"processes": p, "threads_per_process": t, "documents": sizes.throughput_documents,
             "tokens": runs[(p, t)][0]["tokens"], "tokens_per_s": _spread([r["tokens_per_s"] for r in runs[(p, t)]]),
             "load_average": [v for r in runs[(p, t)] for v in r["load_average"]]} for p, t in layouts]


def _read_once(model, tokenizer, folder: str, doc_id: str, prompt: list[int]) -> tuple[float, ...]:
    """Open the bank, read one document, generate one token: the seconds of each step and their sum."""
    start = time.perf_counter()
    bank = load_memory_bank(folder, model, tokenizer)
    opened = time.perf_counter()
    inputs = bank.generation_inputs(doc_id, prompt)
    read = time.perf_counter()
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=model.config.pad_token_id)
    done = time.perf_counter()
    return opened - start, read - opened, done - read, done - start


def _read_times(model, tokenizer, banks: dict[int, str], sizes: BankSizes) -> dict[int, dict]:
    """`reads` documents drawn uniformly from each bank, the banks interleaved (a slow drift of the machine's
    load hits every size alike): the spread of each step per bank size."""
    rng = random.Random(1)
    prompt = tokenizer("w5 w6", add_special_tokens=False)["input_ids"]
    steps = {n: {"open_s": [], "read_s": [], "first_token_s": [], "ttft_s": []} for n in banks}
    for k in range(sizes.warmup + sizes.reads):
        for n, folder in banks.items():
            seconds = _read_once(model, tokenizer, folder, str(rng.randrange(n)), prompt)
            if k >= sizes.warmup:
                for key, value in zip(steps[n], seconds):
                    steps[n][key].append(value)
    return {n: {key: _spread(values) for key, values in steps[n].items()} for n in banks}


def _bank_sizes(work: Path, sizes: BankSizes, threads: int, device: str) -> list[dict]:
    """Peak RSS and tokens/s of encoding each bank size (1 process), then TTFT against the last bank of each."""
    runs = {n: [] for n in sizes.documents}
    for repeat in range(sizes.repeats):
        for n in sizes.documents:
            progress(f"encode {n} documents, 1 x {threads}, peak RSS (run {repeat + 1})")
            if runs[n]:
                shutil.rmtree(Path(runs[n][-1]["bank"]).parent)
            runs[n].append(_encode(work, work / f"corpus-{n}.jsonl", sizes, 1, threads, device))
    progress(f"time to first token, {sizes.reads} documents from each bank, interleaved")
    model, tokenizer = load_model_and_tokenizer(str(work / "model"))
    reads = _read_times(model, tokenizer, {n: runs[n][-1]["bank"] for n in sizes.documents}, sizes)
    return [{"documents": n, "shards": len(load_memory_bank(runs[n][-1]["bank"]).manifest["shards"]),
             "bank_bytes": runs[n][-1]["bank_bytes"], "tokens": runs[n][0]["tokens"],
             "peak_rss_bytes": _spread([r["peak_rss_bytes"] for r in runs[n]]),
             "tokens_per_s": _spread([r["tokens_per_s"] for r in runs[n]]),
             "complete_s": _spread([r["complete_seconds"] for r in runs[n]]), "read": reads[n],
             "load_average": [v for r in runs[n] for v in r["load_average"]]} for n in sizes.documents]


def run(args) -> dict:
    sizes = _sizes(args)
    threads = args.threads or torch.get_num_threads()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="benchmark-banks-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _save_model(sizes, work / "model")
        for n in {*sizes.documents, sizes.throughput_documents}:
            _write_corpus(sizes, work / f"corpus-{n}.jsonl", n)
        throughput = _throughput(work, sizes, args.device)
        banks = _bank_sizes(work, sizes, threads, args.device)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    ratio = banks[-1]["read"]["ttft_s"]["median"] / banks[0]["read"]["ttft_s"]["median"]
    flat = None if args.quick else abs(ratio - 1) <= TTFT_TOLERANCE
    return {"benchmark": "banks", "settings": settings(args, sizes, cpus=os.cpu_count()), "throughput": throughput,
            "banks": banks, "ttft_largest_over_smallest": ratio, "ttft_flat_within_20_percent": flat}


def _ms(spread: dict) -> str:
    return f"{1e3 * spread['median']:.1f} ({1e3 * spread['min']:.1f}-{1e3 * spread['max']:.1f})"


def _rate(spread: dict) -> str:
    return f"{spread['median']:,.0f} ({spread['min']:,.0f}-{spread['max']:,.0f})"


def format_banks(result: dict) -> str:
    s = result["settings"]
    lines = [f"memory-bank benchmark: {s['device']}, {s['cpus']} CPUs, torch {s['torch']}; median (min-max) over "
             f"{s['sizes']['repeats']} runs", "", "encode throughput, "
             f"{result['throughput'][0]['documents']} documents ({result['throughput'][0]['tokens']:,} tokens)",
             "| processes | threads per process | tokens/s | vs 1 x 1 | load average |", "|---|---|---|---|---|"]
    base = result["throughput"][0]["tokens_per_s"]["median"]
    for row in result["throughput"]:
        load = "-".join(f"{v:.1f}" for v in row["load_average"] if v is not None)
        lines.append(f"| {row['processes']} | {row['threads_per_process']} | {_rate(row['tokens_per_s'])} | "
                     f"{row['tokens_per_s']['median'] / base:.2f} | {load} |")
    lines += ["", "bank size: encoding (1 process) and reading one document",
              "| documents | shards | bank MiB | peak RSS MiB | encode tokens/s | mark complete s | open ms | read ms "
              "| first token ms | TTFT ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["banks"]:
        rss, read = row["peak_rss_bytes"], row["read"]
        lines.append(f"| {row['documents']:,} | {row['shards']} | {row['bank_bytes'] / 2**20:.1f} | "
                     f"{rss['median'] / 2**20:.0f} ({rss['min'] / 2**20:.0f}-{rss['max'] / 2**20:.0f}) | "
                     f"{_rate(row['tokens_per_s'])} | {row['complete_s']['median']:.2f} | {_ms(read['open_s'])} | "
                     f"{_ms(read['read_s'])} | {_ms(read['first_token_s'])} | {_ms(read['ttft_s'])} |")
    flat = {None: "n/a at --quick sizes", True: "met", False: "MISSED"}[result["ttft_flat_within_20_percent"]]
    lines += ["", f"TTFT largest / smallest bank: {result['ttft_largest_over_smallest']:.3f} (flat within 20%: {flat})",
              "load average = 1-minute load before-after each run; above the CPU count, other processes shared the "
              "machine and the numbers are noisy"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the encoding worker
def _worker(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memory_models.eval.benchmarks.banks",
                                     description="one encoding process of the memory-bank benchmark")
    for name in ("--model", "--corpus", "--output", "--stats", "--device"):
        parser.add_argument(name, required=True)
    for name in ("--shard-size", "--batch-size", "--threads"):
        parser.add_argument(name, type=int, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    state = PartialState(cpu=args.device == "cpu")
    try:
        model, tokenizer = load_model_and_tokenizer(args.model)
        result = encode_bank(model.to(state.device), tokenizer, open_corpus(args.corpus), args.output,
                             shard_size=args.shard_size, batch_size=args.batch_size, show_progress=False)
        peak = max(Ranks.current().all_gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    finally:
        if state.num_processes > 1:
            state.destroy_process_group()
    if state.is_main_process:
        size = sum(p.stat().st_size for p in Path(args.output).rglob("*") if p.is_file())
        Path(args.stats).write_text(json.dumps({
            "processes": result["processes"], "threads": args.threads, "documents": result["documents"],
            "tokens": result["tokens"], "seconds": result["seconds"], "complete_seconds": result["complete_seconds"],
            "tokens_per_s": result["tokens"] / result["seconds"], "peak_rss_bytes": peak, "bank_bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
