"""Benchmark harness: interleaved repeated timing, the median and min-max of every figure, a decode clock for
`generate`, autocast, progress lines, load average and KV-cache bytes.

Shared by every `python -m memory_models.eval.benchmarks` sub-command; nothing here knows about a particular model.

Every timed figure in a benchmark's JSON is a `spread`: `{"median", "min", "max", "interval", "runs"}` over its
repeats (the median is the figure; `interval` is the median's confidence interval, on which targets are judged). Candidates compared with each other are timed in
interleaved rounds (a, b, c, a, b, c, ...), so a ratio between two of them is computed per round and spread
the same way (`paired_ratio`); a ratio between figures measured apart is bounded by `ratio_bounds`.
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
import transformers
from transformers.generation.streamers import BaseStreamer


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


# ----------------------------------------------------------------------------- figures: median and min-max
def median_interval(values: Sequence[float]) -> list[float]:
    """A distribution-free confidence interval of the median, at least 95% where the runs allow it.

    The order statistics `x_(k)` and `x_(n+1-k)` with the largest `k` whose tail `P(X <= k - 1)`, `X ~
    Binomial(n, 1/2)`, is at most 2.5% (with 10 runs: the 2nd smallest and the 2nd largest, 97.9%); with
    fewer than 6 runs no such `k` exists and the interval is the min-max (coverage `1 - 2^(1-n)`).
    """
    ordered, n = sorted(values), len(values)
    k = 1
    while k + 1 <= (n + 1) // 2 and sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= 0.025:
        k += 1
    return [ordered[k - 1], ordered[n - k]]


def spread(values: Sequence[float]) -> dict:
    """The median, the min-max and the median's confidence `interval` (`median_interval`) of repeated
    measurements of one figure, and how many there were."""
    values = [float(value) for value in values]
    if not values:
        raise ValueError("spread of no measurements: at least one repeat is needed")
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "interval": median_interval(values), "runs": len(values)}


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """`spread` of the per-round ratios of two candidates timed in the same interleaved rounds."""
    if len(numerators) != len(denominators):
        raise ValueError(f"paired ratio of {len(numerators)} and {len(denominators)} measurements")
    return spread([a / b for a, b in zip(numerators, denominators)])


def ratio_bounds(numerator: dict, denominator: dict) -> dict:
    """Ratio of two spreads measured apart: the ratio of the medians, its min-max and interval bounded by the
    extreme combinations of theirs."""
    (top_low, top_high), (bottom_low, bottom_high) = numerator["interval"], denominator["interval"]
    return {"median": numerator["median"] / denominator["median"], "min": numerator["min"] / denominator["max"],
            "max": numerator["max"] / denominator["min"], "interval": [top_low / bottom_high, top_high / bottom_low],
            "runs": min(numerator["runs"], denominator["runs"])}


def rates(work: float, seconds: Sequence[float]) -> list[float]:
    """Work per second of each timed sample (tokens/s from seconds)."""
    return [work / value for value in seconds]


# ----------------------------------------------------------------------------- sampling
def interleave(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int, label: str = "") -> dict[str, list]:
    """What each `calls[name]()` returns in `repeats` interleaved rounds, after `warmup` untimed calls each.

    The rounds interleave the candidates (a, b, c, a, b, c, ...), so slow drifts in machine load hit every
    candidate alike. With a `label`, each round prints a progress line.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples = {name: [] for name in calls}
    for index in range(repeats):
        if label:
            progress(f"{label}: round {index + 1}/{repeats}")
        for name, call in calls.items():
            samples[name].append(call())
    return samples


def calls_per_sample(fn: Callable[[], Any], calibrate: bool = True) -> int:
    """How many consecutive calls of a fast `fn` make one sample of at least 0.2 s (`timeit`'s autorange); 1
    without calibration."""
    return timeit.Timer(fn).autorange()[0] if calibrate else 1


def sample_seconds(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: str,
                   number: dict[str, int] | None = None, label: str = "") -> dict[str, list[float]]:
    """Wall seconds per call of each `fns[name]()`, one entry per interleaved round (see `interleave`).

    A sample runs `number[name]` consecutive calls (default 1) and records their mean, so a fast call can be
    given enough work per sample to be stable.
    """
    number = number or {}

    def stopwatch(fn, count):
        def timed() -> float:
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(count):
                fn()
            _synchronize(device)
            return (time.perf_counter() - start) / count
        return timed

    return interleave({name: stopwatch(fn, number.get(name, 1)) for name, fn in fns.items()}, repeats, warmup, label)


class DecodeClock(BaseStreamer):
    """A `generate(streamer=...)` that timestamps each step inside one call.

    `generate` hands the prompt to `put` once before the prefill, then each new token as soon as it is chosen
    (batch 1, greedy or sampling; not beam search). The time to first token runs from the call to the first
    new token; the decode rate counts the tokens after the first over the time from the first to the last, so
    the prefill never enters it.
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.start = time.perf_counter()
        self.times: list[float] = []

    def put(self, value) -> None:
        _synchronize(self.device)
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass

    @property
    def decode_steps(self) -> int:
        """Tokens generated after the first (`new_tokens - 1`)."""
        return len(self.times) - 2

    def first_token_s(self) -> float:
        """Seconds from the start of the call to the first new token (the prefill)."""
        if len(self.times) < 2:
            raise ValueError(f"the clock saw {len(self.times)} calls of put: no new token was generated")
        return self.times[1] - self.start

    def decode_tokens_per_s(self) -> float:
        """Tokens after the first / seconds from the first new token to the last."""
        if self.decode_steps < 1:
            raise ValueError(f"a decode rate needs at least 2 new tokens, the clock saw {self.decode_steps + 1}")
        return self.decode_steps / (self.times[-1] - self.times[1])

    def total_s(self) -> float:
        """Seconds from the start of the call to the last new token."""
        return self.times[-1] - self.start


def sample_generation(calls: dict[str, Callable[[BaseStreamer], Any]], repeats: int, warmup: int,
                      device: str, label: str = "") -> dict[str, list[DecodeClock]]:
    """One `DecodeClock` per interleaved round for each `calls[name](streamer)` (a `generate` call)."""

    def clocked(call):
        def run() -> DecodeClock:
            _synchronize(device)
            clock = DecodeClock(device)
            call(clock)
            return clock
        return run

    return interleave({name: clocked(call) for name, call in calls.items()}, repeats, warmup, label)


def generation_figures(clocks: Sequence[DecodeClock], new_tokens: int) -> dict:
    """Time to first token and decode tokens/s (spreads) of the clocks of one candidate, and its decode steps.

    Raises `RuntimeError` when a call did not generate exactly `new_tokens` tokens.
    """
    steps = {clock.decode_steps for clock in clocks}
    if steps != {new_tokens - 1}:
        raise RuntimeError(f"expected {new_tokens - 1} decode steps in every call, the clocks saw {sorted(steps)}")
    return {"first_token_s": spread([clock.first_token_s() for clock in clocks]),
            "decode_tokens_per_s": spread([clock.decode_tokens_per_s() for clock in clocks]),
            "decode_steps": new_tokens - 1}


# ----------------------------------------------------------------------------- the rest of the harness
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


def settings(args, sizes=None, samples: dict | None = None, **extra) -> dict:
    """The settings block of a benchmark's JSON: device, dtype, threads, versions, machine, the sizes and
    `samples` (repeats, warm-up calls and the work of one sample of each figure)."""
    result = {"device": args.device, "dtype": args.dtype, "quick": args.quick, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "transformers": transformers.__version__,
              "python": platform.python_version(), "machine": platform.machine()}
    if sizes is not None:
        result["sizes"] = asdict(sizes)
        result["notes"] = list(getattr(sizes, "notes", []))
    if samples is not None:
        result["samples"] = samples
    return {**result, **extra}
