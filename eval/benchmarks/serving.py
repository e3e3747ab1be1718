"""Serving benchmark: `memory-models benchmark serving [--quick] [--lengths 4096 16384] [--concurrency 1 8]`.

Time to first token (TTFT) and tokens/s through vLLM's OpenAI-compatible server, for a document read from a memory
bank (`memory-models serve` of a memory model; `eval.serving.client`) against the same document sent as tokens to
the same vLLM serving a full-context Llama of the decoder's shape and weights. Needs the vLLM environment
(`scripts/vllm_env.sh`, or `--vllm-python`).

* One rolling-window memory model (decoder 128 wide, 2 layers, 4 heads, chunk 256, 4 slots) and a word-level
  tokenizer are saved to a work folder; per context length `n`, as many random documents as the most concurrent
  requests are encoded into one bank, and a `LlamaForCausalLM` with the decoder's config (positions enough for
  the longest context) and weights is saved beside it.
* Both servers are up together and take turns: rounds interleave them (every length and concurrency, each
  server once, in alternating order), so that load from other processes that drifts during the run reaches both
  alike; ratios are taken per round. Both run with vLLM's prefix cache off (a repeated request would otherwise
  skip its prefill) and the options given with `--vllm-arg`. On a CPU vLLM runs its engine on one core and leaves
  the others to its API server (and here to the client).
* One sample = `c` requests sent at once (`c` in `--concurrency`), each for its own document followed by a
  `prompt_tokens` prompt, each generating exactly `new_tokens` (end-of-sequence ignored), streamed. Bank: the
  request's clock starts before the document is read from the bank (memories, tail), so TTFT includes reading
  it, building the prompt embeddings and, past a chunk boundary, encoding the finished chunk here. Full context:
  the clock starts when the token ids are sent. TTFT = to the first streamed token; tokens/s = `c * new_tokens`
  over the sample's wall time (first request sent to last token received).
* Figures: TTFT over every request of every round, tokens/s over the rounds; median and min-max each. Ratios:
  per round (each round's median TTFT, each round's tokens/s), then their median and min-max.

Targets (judged on the median's interval of the per-round ratios, `reports.verdict`): TTFT with a bank at most
0.05x full context at 16384 tokens (one request at a time); tokens/s with 8 concurrent requests at least 4x one
request's (bank).
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import torch
import transformers

from memory_models.eval.banks.bank import load_memory_bank
from memory_models.eval.banks.encode import encode_bank
from memory_models.eval.benchmarks.banks import word_tokenizer
from memory_models.eval.benchmarks.models import llama_config
from memory_models.eval.benchmarks.reports import fmt_spread, verdict
from memory_models.eval.benchmarks.timing import paired_ratio, progress, settings, spread
from memory_models.eval.serving.client import Endpoint, MemoryModelClient
from memory_models.eval.serving.launch import free_port, running, serve_command
from memory_models.eval.serving.serve import find_vllm_python
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM

TARGETS = {"ttft_bank_over_full_max_at_16384": 0.05, "tokens_per_s_concurrent_over_single_min": 4.0}
FULL_CONTEXT_NAME = "full-context-llama"
SERVER_OPTIONS = ["--no-enable-prefix-caching"]


@dataclass
class ServingSizes:
    vocab_size: int = 8192
    decoder_hidden: int = 128
    encoder_hidden: int = 64
    num_layers: int = 2
    num_heads: int = 4
    chunk_size: int = 256
    num_memory_slots: int = 4
    lengths: tuple = (4096, 16384)
    concurrency: tuple = (1, 8)
    prompt_tokens: int = 16
    new_tokens: int = 256  # a whole chunk: every answer crosses a chunk boundary (a local encode, a new request)
    encode_batch: int = 64
    kv_cache_gib: int = 2
    warmup: int = 1
    repeats: int = 5


QUICK = ServingSizes(vocab_size=128, decoder_hidden=64, encoder_hidden=32, num_heads=2, chunk_size=8, lengths=(64, 128),
                     concurrency=(1, 2), prompt_tokens=4, new_tokens=6, encode_batch=8, kv_cache_gib=1, warmup=0,
                     repeats=1)


def _sizes(args) -> ServingSizes:
    sizes = QUICK if args.quick else ServingSizes()
    for name in ("lengths", "concurrency", "new_tokens", "repeats", "warmup"):
        value = getattr(args, name, None)
        if value is not None:
            sizes = replace(sizes, **{name: tuple(sorted(set(value))) if name in ("lengths", "concurrency") else value})
    if min(sizes.lengths) <= sizes.prompt_tokens or min(sizes.concurrency) < 1 or sizes.new_tokens < 1:
        raise ValueError(f"--lengths must exceed the {sizes.prompt_tokens}-token prompt, --concurrency and "
                         f"--new-tokens be positive: got {sizes.lengths}, {sizes.concurrency}, {sizes.new_tokens}")
    return sizes


# ----------------------------------------------------------------------------- the models, documents and bank
def prepare(work: Path, sizes: ServingSizes) -> dict:
    """Save the memory model (+ tokenizer), its bank of random documents and the full-context Llama; returns the
    folders and, per length, the documents' ids and token ids."""
    config = MemoryConfig(
        encoder_config=llama_config(sizes, sizes.encoder_hidden, sizes.chunk_size),
        decoder_config=llama_config(sizes, sizes.decoder_hidden, sizes.num_memory_slots + sizes.chunk_size),
        chunk_size=sizes.chunk_size, num_memory_slots=sizes.num_memory_slots, memory_window="rolling",
        max_context=max(sizes.lengths) + sizes.new_tokens, pad_token_id=1, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    memory, tokenizer = MemoryForCausalLM(config).eval(), word_tokenizer(sizes.vocab_size)
    memory.save_pretrained(work / "memory-model")
    tokenizer.save_pretrained(work / "memory-model")
    llama = transformers.LlamaForCausalLM(llama_config(sizes, sizes.decoder_hidden, _full_length(sizes)))
    llama.load_state_dict(memory.decoder.state_dict())
    llama.save_pretrained(work / "full-context-llama")
    generator = torch.Generator().manual_seed(1)
    documents = {n: {f"n{n}-{i}": torch.randint(3, sizes.vocab_size, (n - sizes.prompt_tokens,),
                                                generator=generator).tolist() for i in range(max(sizes.concurrency))}
                 for n in sizes.lengths}
    rows = [(doc_id, ids) for docs in documents.values() for doc_id, ids in docs.items()]
    corpus = datasets.Dataset.from_dict({"id": [doc_id for doc_id, _ in rows],
                                         "text": [" ".join(f"w{i}" for i in ids) for _, ids in rows]})
    progress(f"encoding {len(rows)} documents into a bank")
    encode_bank(memory, tokenizer, corpus, work / "bank", batch_size=sizes.encode_batch, show_progress=False)
    prompt = torch.randint(3, sizes.vocab_size, (sizes.prompt_tokens,), generator=generator).tolist()
    return {"memory": memory, "tokenizer": tokenizer, "documents": documents, "prompt": prompt}


def _full_length(sizes: ServingSizes) -> int:
    return max(sizes.lengths) + sizes.new_tokens


# ----------------------------------------------------------------------------- one sample
def _timed(request) -> dict:
    """Run `request(on_tokens)`; its TTFT and end, in seconds since the call."""
    start, first = time.perf_counter(), []

    def on_tokens(tokens: list[int]) -> None:
        if not first:
            first.append(time.perf_counter())

    tokens = request(on_tokens)
    return {"ttft_s": first[0] - start, "end_s": time.perf_counter() - start, "tokens": len(tokens)}


def sample(requests: list, new_tokens: int) -> dict:
    """All `requests` at once: each one's TTFT, and the tokens/s of the whole sample."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        timings = list(pool.map(_timed, requests))
    wall = time.perf_counter() - start
    if any(timing["tokens"] != new_tokens for timing in timings):
        raise RuntimeError(f"a request returned {[t['tokens'] for t in timings]} tokens, not {new_tokens} each")
    return {"ttft_s": [timing["ttft_s"] for timing in timings], "tokens_per_s": len(requests) * new_tokens / wall}


def _bank_requests(client, bank, prompt, doc_ids, new_tokens):
    def request(doc_id):
        return lambda on_tokens: client.generate(bank.generation_inputs(doc_id, prompt), new_tokens,
                                                 on_tokens=on_tokens)

    return [request(doc_id) for doc_id in doc_ids]


def _full_requests(endpoint, documents, prompt, new_tokens):
    def request(ids):
        body = {"model": FULL_CONTEXT_NAME, "prompt": ids + prompt, "max_tokens": new_tokens, "temperature": 0.0,
                "ignore_eos": True}
        return lambda on_tokens: endpoint.completion(body, on_tokens)

    return [request(ids) for ids in documents]


def measure(candidates: dict, sizes: ServingSizes) -> dict:
    """Interleaved rounds: in each, every length and concurrency, each candidate (`name -> make_requests(n, c)`)
    once, in alternating order (load that drifts during the run reaches both alike). Returns, per
    `(candidate, n, c)`, the samples of the timed rounds."""
    samples = {(name, n, c): [] for name in candidates for n in sizes.lengths for c in sizes.concurrency}
    for index in range(sizes.warmup + sizes.repeats):
        kind = "warm-up" if index < sizes.warmup else "round"
        for n in sizes.lengths:
            for c in sizes.concurrency:
                for name in (list(candidates) if index % 2 == 0 else list(candidates)[::-1]):
                    progress(f"{kind} {index + 1}: {name}, {n} tokens, {c} concurrent")
                    result = sample(candidates[name](n, c), sizes.new_tokens)
                    if index >= sizes.warmup:
                        samples[name, n, c].append(result)
    return samples


def figures(samples: list[dict]) -> dict:
    """TTFT over every request of every round, tokens/s over the rounds, and each round's median TTFT."""
    return {"ttft_s": spread([t for s in samples for t in s["ttft_s"]]),
            "tokens_per_s": spread([s["tokens_per_s"] for s in samples]),
            "round_ttft_s": [statistics.median(s["ttft_s"]) for s in samples],
            "round_tokens_per_s": [s["tokens_per_s"] for s in samples]}


# ----------------------------------------------------------------------------- the servers
@contextlib.contextmanager
def servers(work: Path, sizes: ServingSizes, python: str, vllm_args: list):
    """Both servers, up together (each on its own port; they take turns in `measure`); yields their URLs and
    start-up seconds."""
    environment = {"VLLM_CPU_KVCACHE_SPACE": str(sizes.kv_cache_gib)}
    memory_port, full_port = free_port(), free_port()
    full_command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(work / "full-context-llama"),
                    "--served-model-name", FULL_CONTEXT_NAME, "--skip-tokenizer-init", "--dtype", "float32",
                    "--max-model-len", str(_full_length(sizes)), "--port", str(full_port), *SERVER_OPTIONS,
                    *vllm_args]
    started = time.perf_counter()
    with running(serve_command(work / "memory-model", memory_port, python, SERVER_OPTIONS + vllm_args),
                 f"http://127.0.0.1:{memory_port}", work / "memory-server.log", environment) as memory_url:
        middle = time.perf_counter()
        with running(full_command, f"http://127.0.0.1:{full_port}", work / "full-context-server.log",
                     environment) as full_url:
            startup = {"bank": middle - started, "full_context": time.perf_counter() - middle}
            yield memory_url, full_url, startup


def check_targets(rows: dict, sizes: ServingSizes, quick: bool) -> list:
    """The TTFT target at 16384 tokens (one request; the per-round ratio), and the concurrency target at every
    length (bank; the per-round ratio of the most concurrent requests' tokens/s to one request's)."""
    checks = []
    single, most = min(sizes.concurrency), max(sizes.concurrency)
    if 16384 in sizes.lengths or quick:
        n = 16384 if 16384 in sizes.lengths else max(sizes.lengths)
        ratio = paired_ratio(rows["bank", n, single]["round_ttft_s"], rows["full_context", n, single]["round_ttft_s"])
        limit = TARGETS["ttft_bank_over_full_max_at_16384"]
        met, status = verdict(ratio, [lambda x: x <= limit], quick)
        checks.append({"target": f"TTFT bank / full context <= {limit} at {n} tokens, {single} request",
                       "measured": ratio, "met": met, "status": status})
    if most > single:
        limit = TARGETS["tokens_per_s_concurrent_over_single_min"]
        for n in sizes.lengths:
            ratio = paired_ratio(rows["bank", n, most]["round_tokens_per_s"],
                                 rows["bank", n, single]["round_tokens_per_s"])
            met, status = verdict(ratio, [lambda x: x >= limit], quick)
            checks.append({"target": f"bank tokens/s, {most} concurrent / {single} >= {limit} at {n} tokens",
                           "measured": ratio, "met": met, "status": status})
    return checks


def run(args) -> dict:
    sizes = _sizes(args)
    if args.device != "cpu" or args.dtype != "fp32":
        raise ValueError("the serving benchmark runs vLLM's own device and float32 (--device cpu, --dtype fp32); "
                         "pass vLLM options with --vllm-arg")
    python = find_vllm_python(args.vllm_python)
    vllm_args = list(args.vllm_arg or [])
    with tempfile.TemporaryDirectory(prefix="serving-") as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        prepared = prepare(work, sizes)
        memory, tokenizer, documents, prompt = (prepared[k] for k in ("memory", "tokenizer", "documents", "prompt"))
        with servers(work, sizes, python, vllm_args) as (memory_url, full_url, startup):
            client = MemoryModelClient(memory_url, memory, timeout=3600, eos_token_ids=[])
            bank = load_memory_bank(work / "bank", memory, tokenizer)
            endpoint = Endpoint(full_url, timeout=3600)
            samples = measure({
                "bank": lambda n, c: _bank_requests(client, bank, prompt, list(documents[n])[:c], sizes.new_tokens),
                "full_context": lambda n, c: _full_requests(endpoint, list(documents[n].values())[:c], prompt,
                                                            sizes.new_tokens),
            }, sizes)
    rows = {key: figures(values) for key, values in samples.items()}
    table = [{"length": n, "concurrency": c, "bank": rows["bank", n, c], "full_context": rows["full_context", n, c],
              "ttft_ratio": paired_ratio(rows["bank", n, c]["round_ttft_s"],
                                         rows["full_context", n, c]["round_ttft_s"])}
             for n in sizes.lengths for c in sizes.concurrency]
    return {"benchmark": "serving", "rows": table, "startup_s": startup,
            "targets": check_targets(rows, sizes, args.quick),
            "settings": settings(args, sizes, vllm_python=python, vllm_args=SERVER_OPTIONS + vllm_args,
                                 vllm=_vllm_version(python))}


def _vllm_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def format_table(result: dict) -> str:
    """The table: per length and concurrency, TTFT (ms) and tokens/s of both, and the TTFT ratio; the targets."""
    lines = ["serving through vLLM: bank (memory model) vs full-context Llama, median (min-max); ratio: the median "
             "of the rounds' TTFT ratios",
             f"{'tokens':>7} {'conc':>4} | {'TTFT bank ms':>22} {'TTFT full ms':>24} {'ratio':>7} | "
             f"{'tok/s bank':>20} {'tok/s full':>20}"]
    for row in result["rows"]:
        bank, full = row["bank"], row["full_context"]
        lines.append(f"{row['length']:>7} {row['concurrency']:>4} | {fmt_spread(bank['ttft_s'], 1000):>22} "
                     f"{fmt_spread(full['ttft_s'], 1000):>24} {row['ttft_ratio']['median']:>7.4f} | "
                     f"{fmt_spread(bank['tokens_per_s']):>20} {fmt_spread(full['tokens_per_s']):>20}")
    startup = result["startup_s"]
    lines.append(f"server start-up: bank {startup['bank']:.0f} s, full context {startup['full_context']:.0f} s "
                 f"(vLLM {result['settings']['vllm']}, options {' '.join(result['settings']['vllm_args'])})")
    lines.append("targets:")
    lines += [f"  [{check['status']:>10}] {check['target']}: measured {check['measured']['median']:.4g} "
              f"(min-max {check['measured']['min']:.4g} to {check['measured']['max']:.4g})"
              for check in result["targets"]]
    return "\n".join(lines)

