"""Benchmark harness: interleaved median timing, autocast, progress lines, load average and KV-cache bytes.

Shared by every `python -m eval.benchmarks` sub-command; nothing here knows about a particular model.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import sys
import time
from dataclasses import asdict

import torch
import transformers


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def progress(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float | None:
    """1-minute load average (other processes sharing the CPU make timings noisy), `None` where unknown."""
    try:
        with open("/proc/loadavg") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def median_seconds(fns: dict, sizes, device: str) -> dict:
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


def settings(args, sizes=None, **extra) -> dict:
    """The settings block of a benchmark's JSON: device, dtype, threads, versions, machine and the sizes."""
    result = {"device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "python": platform.python_version(), "machine": platform.machine()}
    if sizes is not None:
        result["sizes"] = asdict(sizes)
        result["notes"] = list(getattr(sizes, "notes", []))
    return {**result, **extra}
