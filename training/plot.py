"""Plots of the package's JSON outputs with matplotlib (the optional extra `[plot]`, included in `[eval]`).

    memory-models plot training runs/mt/metrics.json --output docs/training      # loss and eval curves
    memory-models plot retention ae.json clm.json --output docs/retention       # accuracy and H_r vs n_ctx
    memory-models plot benchmark benchmark-memory.json --output docs/benchmark  # speed and KV bytes vs context

Each writes `OUTPUT.png` and `OUTPUT.svg`: new files, or pictures memory-models drew there before (never a file of
yours). `memory-models train` draws `loss_curve.png` this way, and `memory-models retention` / `benchmark` draw their
plot beside their JSON, whenever matplotlib is installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from memory_models import __version__
from memory_models.conversion.safe_io import DRAWN_BY, check_pictures, write_file_atomic
from memory_models.training.arguments import plot_parser

INSTALL_HINT = "plots need matplotlib: pip install -c constraints.txt -e '.[plot]' (included in '.[eval]')"


def pyplot():
    """`matplotlib.pyplot` on the file-only Agg backend; `ImportError` naming the extra when it is missing."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def have_matplotlib() -> bool:
    try:
        pyplot()
    except ImportError:
        return False
    return True


def picture_paths(output) -> list[Path]:
    """`output.png` and `output.svg` (`output` without extension, or ending in .png / .svg)."""
    stem = Path(output)
    stem = stem.with_suffix("") if stem.suffix in (".png", ".svg") else stem
    return [stem.with_suffix(".png"), stem.with_suffix(".svg")]


def picture_metadata(suffix: str) -> dict:
    """`savefig` metadata of a `.png` or `.svg` that marks it as ours (`safe_io.DRAWN_BY`, so that a rerun may
    replace it) and keeps an SVG free of a timestamp."""
    import matplotlib

    drawn_by = f"{DRAWN_BY} {__version__} with Matplotlib {matplotlib.__version__}"
    return {"Software": drawn_by} if suffix == ".png" else {"Creator": drawn_by, "Date": None}


def save_figure(figure, output) -> list[Path]:
    """Write `figure` as `output.png` (150 dpi) and `output.svg`, cropped to what it draws, each through a
    temporary file renamed into place and marked as ours in its metadata (`safe_io.DRAWN_BY`); returns both paths."""
    paths = picture_paths(output)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, restylable
        # The crop of bbox_inches="tight", measured once for both files ("tight" draws the whole figure once more
        # per file to measure it: a third of the time of every loss curve).
        crop = figure.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
        for path in paths:
            write_file_atomic(path, lambda temporary: figure.savefig(
                temporary, format=path.suffix[1:], dpi=150, bbox_inches=crop, metadata=picture_metadata(path.suffix)))
    plt.close(figure)
    return paths


def _finite(points) -> list:
    return [(x, y) for x, y in points if y == y and abs(y) != float("inf")]


# ---------------------------------------------------------------------------------------------- training
def loss_axis_top(losses: dict[str, list]) -> tuple[float | None, list[str]]:
    """The loss axis' upper limit and the eval series above it: an evaluation of a stream the run does not train
    (the demo's blank-copy model scored on next-token prediction: ~20 nats) would squash the training curve, so
    series that reach over twice the highest training loss are left off scale (and named so) and the axis ends
    just above the others. `(None, [])` when every series fits."""
    trained = [y for name, points in losses.items() if name.startswith("train") for _, y in points]
    if not trained:
        return None, []
    limit = 2 * max(trained)
    above = [name for name, points in losses.items()
             if not name.startswith("train") and max(y for _, y in points) > limit]
    if not above:
        return None, []
    shown = [y for name, points in losses.items() if name not in above for _, y in points]
    return 1.1 * max(shown), above


def _same_curve(points, others) -> bool:
    """Whether two `[[step, value], ...]` series are one curve (stream losses are logged to 4 decimals)."""
    return len(points) == len(others) and all(
        step == other_step and abs(value - other) <= 1e-3 * max(1.0, abs(other))
        for (step, value), (other_step, other) in zip(points, others))


def _dashes(index: int):
    """A line style per series: solid first, then dashes with wider gaps, so equal curves stay visible."""
    return "-" if index == 0 else (0, (4, 2 + 2 * index))


def plot_training(summary: dict, output) -> list[Path]:
    """Training loss and eval losses (left), eval accuracies (right) of a `metrics.json` summary."""
    objective = summary.get("config", {}).get("objective")
    streams = summary.get("train_stream_loss_history") or {}  # combined objective: loss_clm, loss_copy
    if len(streams) == 1 and _same_curve(next(iter(streams.values())), summary.get("train_loss_history", [])):
        streams = {}  # one stream with weight 1 (copy + blank copy: both parts are `copy`) is the loss itself
    label = f"train loss ({objective}: weighted sum)" if streams else f"train loss ({objective} objective)"
    losses = {label if objective else "train loss": summary.get("train_loss_history", [])}
    losses.update({f"train {key}": points for key, points in streams.items()})
    history = summary.get("eval_history", {})
    losses.update({key.replace("_", " "): v for key, v in history.items() if key.endswith("_loss")})
    accuracies = {key.removeprefix("eval_").replace("_", " "): v for key, v in history.items() if key.endswith("_accuracy")}
    losses = {name: _finite(points) for name, points in losses.items() if _finite(points)}
    if not losses:
        raise ValueError(f"nothing to plot: no finite loss in {sorted(summary)}")
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator  # matplotlib is importable once pyplot() returned

    # One step axis (a single final evaluation sits at the end of it); panels apart enough for 0.0125-style ticks.
    figure, axes = plt.subplots(1, 2 if accuracies else 1, figsize=(10 if accuracies else 5.5, 3.8), squeeze=False,
                                sharex=True, gridspec_kw={"wspace": 0.3})
    top, above = loss_axis_top(losses)
    for index, (name, points) in enumerate(losses.items()):  # eval curves dashed: equal ones stay visible
        label = f"{name} (off scale: last {points[-1][1]:.1f})" if name in above else name
        axes[0, 0].plot(*zip(*points), marker="o" if len(points) < 30 else None, markersize=3, label=label,
                        linestyle="-" if name.startswith("train") else _dashes(index))
    axes[0, 0].set(xlabel="optimizer step", ylabel="cross-entropy (nats)", title="loss")
    if top is not None:
        axes[0, 0].set_ylim(0, top)
    for index, (name, points) in enumerate(accuracies.items()):
        axes[0, 1].plot(*zip(*points), marker="o", markersize=3, label=name, linestyle=_dashes(index))
    if accuracies:
        axes[0, 1].set(xlabel="optimizer step", ylabel="token accuracy (held out)", title="accuracy")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
        # matplotlib's default tick steps, whole steps only (a 2-step run: 1, 2, not 1.0, 1.2, ...)
        axis.xaxis.set_major_locator(MaxNLocator("auto", integer=True, steps=[1, 2, 2.5, 5, 10]))
    for axis, columns in zip(axes[0], (2, 1)):  # under each panel (inside, they hid curves); loss: 2 columns
        axis.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=columns)
    config = summary.get("config", {})
    source = (f"--preset {config['preset']}" if config.get("preset") else
              f"--init-from {config['init_from']}" if config.get("init_from") else
              f"({config.get('model_class')}, {config.get('model_type')})")
    figure.suptitle(f"memory-models train {source} "
                    f"--objective {config.get('objective')} ({summary.get('steps', '?')} steps, "
                    f"context {config.get('context')}, batch {config.get('per_device_batch_size')})", fontsize=10)
    return save_figure(figure, output)


# ---------------------------------------------------------------------------------------------- retention
def plot_retention(results: dict[str, list[dict]], output, title: str = "") -> list[Path]:
    """Accuracy and `H_r` against context length, one line per encoder (the shape of the paper's Table 2).

    Args:
        results: encoder name -> rows with `context`, `accuracy` and `entropy_ratio` (retention JSON `results`).
    """
    if not any(results.values()):
        raise ValueError(f"nothing to plot: no retention rows for {list(results)}")
    plt = pyplot()
    figure, (accuracy, entropy) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, rows in results.items():
        rows = sorted(rows, key=lambda row: row["context"])
        contexts = [row["context"] for row in rows]
        accuracy.plot(contexts, [100 * row["accuracy"] for row in rows], marker="o", label=name)
        entropy.plot(contexts, [row["entropy_ratio"] for row in rows], marker="o", label=name)
    accuracy.set(ylabel="reconstruction accuracy (%)", title="token accuracy of the probe")
    entropy.set(ylabel="H_r = 1 - CE / ln V", title="entropy ratio")
    for axis in (accuracy, entropy):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("context length n_ctx (tokens)")
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    figure.suptitle(title or "information retention (memory-models retention)", fontsize=10)
    return save_figure(figure, output)


def retention_title(settings: dict) -> str:
    return (f"memory-models retention --dataset {settings.get('dataset')} --steps {settings.get('steps')} "
            f"--decoder-layers {settings.get('decoder_layers')} --decoder-hidden {settings.get('decoder_hidden')}")


# ---------------------------------------------------------------------------------------------- curves
def plot_curves(curves: dict[str, dict[str, list]], output, title: str = "", xlabel: str = "optimizer step") -> list[Path]:
    """Held-out accuracy against optimizer step (or `xlabel`), one panel per metric and one line per model (the shape of the
    paper's Fig. 4(d)): the mean over seeds, with the seeds' range shaded.

    Args:
        curves: model name -> metric name (e.g. `"blank-copy accuracy"`) -> one `[(step, value), ...]` per seed.
    """
    metrics = list(dict.fromkeys(metric for per_model in curves.values() for metric in per_model))
    if not metrics:
        raise ValueError(f"nothing to plot: no curves for {list(curves)}")
    plt = pyplot()
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes.flat, metrics):
        for index, (name, per_model) in enumerate(curves.items()):
            by_step: dict = {}
            for seed_points in per_model.get(metric, []):
                for step, value in _finite(seed_points):
                    by_step.setdefault(step, []).append(100 * value)
            if not by_step:
                continue
            steps = sorted(by_step)
            mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            line, = axis.plot(steps, mean, marker="o", markersize=3, label=name, color=f"C{index % 10}")
            axis.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                              color=line.get_color(), alpha=0.15, linewidth=0)
        axis.set(xlabel=xlabel, ylabel=f"{metric} (%, held out)", title=metric)
        axis.xaxis.get_major_locator().set_params(integer=True)  # steps and chunk distances are whole numbers
        axis.grid(alpha=0.3)
    # One legend under the panels (a model keeps its colour in every panel): five long model names inside a panel
    # hid its lines and its axis label.
    handles, labels = max((axis.get_legend_handles_labels() for axis in axes.flat), key=lambda pair: len(pair[1]))
    figure.legend(handles, labels, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(len(metrics), len(labels)))
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, output)


# ---------------------------------------------------------------------------------------------- benchmark
BENCHMARK_MODELS = {"memory": "memory model", "llama_full_context": "full-context Llama"}


def _with_error(figures: list) -> tuple[list, list]:
    """Medians and `[below, above]` error lengths of benchmark figures: a spread (`median`, `min`, `max`) or a
    plain number (a byte count: no error)."""
    medians = [f["median"] if isinstance(f, dict) else f for f in figures]
    below = [m - f["min"] if isinstance(f, dict) else 0 for m, f in zip(medians, figures)]
    above = [f["max"] - m if isinstance(f, dict) else 0 for m, f in zip(medians, figures)]
    return medians, [below, above]


def plot_benchmark(result: dict, output) -> list[Path]:
    """Prefill seconds, decode tokens/s and KV-cache bytes against context (log axes); training tokens/s too,
    when measured. Memory model against full-context Llama with the same decoder weights. Points are medians,
    bars the min-max over the repeats."""
    inference, training = result.get("inference", []), result.get("training", [])
    if not inference and not training:
        raise ValueError("nothing to plot: the benchmark result has neither training nor inference rows")
    panels = ([("prefill_s", "prefill (time to first token, s)"), ("decode_tokens_per_s", "decode (tokens/s)"),
               ("kv_cache_bytes", "KV-cache (bytes)")] if inference else []) + (["training"] if training else [])
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        if panel == "training":
            names = sorted({name for row in training for name in row["tokens_per_s"]})
            for name in names:
                rows = [row for row in training if name in row["tokens_per_s"]]
                medians, error = _with_error([row["tokens_per_s"][name] for row in rows])
                axis.errorbar([row["context"] for row in rows], medians, yerr=error, marker="o", capsize=3,
                              label=name.replace("_", " "))
            axis.set(ylabel="training tokens/s", title="training step (fwd + bwd + AdamW)")
        else:
            key, label = panel
            for model, name in BENCHMARK_MODELS.items():
                medians, error = _with_error([row[model][key] for row in inference])
                axis.errorbar([row["context"] for row in inference], medians, yerr=error, marker="o", capsize=3,
                              label=name)
            axis.set(ylabel=label, title=label.split(" (")[0])
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("context (tokens)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    settings = result.get("settings", {})
    sizes = settings.get("sizes", {})
    loads = [v for row in inference + training for v in row.get("load_average", []) if v is not None]
    load = f"; load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""  # noisy timings when > threads
    figure.suptitle(f"memory-models benchmark memory{' --quick' if settings.get('quick') else ''}: "
                    f"{settings.get('device')} {settings.get('dtype')}, {settings.get('threads')} threads; decoder "
                    f"{sizes.get('decoder_hidden')} x {sizes.get('num_layers')} layers, chunk "
                    f"{sizes.get('chunk_size')}{load}; median, bars min-max", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, output)


def plot_beside(json_path, plot) -> list[Path]:
    """Run `plot(output_stem)` next to `json_path` when matplotlib is installed; otherwise print the hint."""
    if not have_matplotlib():
        print(f"(no plot: {INSTALL_HINT})", file=sys.stderr)
        return []
    return plot(Path(json_path).with_suffix(""))


# ---------------------------------------------------------------------------------------------- CLI
def read_result(path: str, kind: str) -> dict:
    """The JSON object of a result file; a missing file, invalid JSON or another JSON value is a `ValueError` naming
    the file."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") \
            from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path!r} holds a JSON {type(payload).__name__}, not the object a {kind} result is")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """`memory-models plot {training,retention,benchmark} JSON... --output STEM`."""
    args = plot_parser().parse_args(argv)
    loaded = [read_result(path, args.kind) for path in args.inputs]
    if args.kind != "retention" and len(loaded) > 1:
        raise ValueError(f"`plot {args.kind}` takes one JSON file, got {len(loaded)}: {args.inputs}")
    check_pictures(picture_paths(args.output))  # new, or pictures of ours: never a file of the user's
    if args.kind == "training":
        paths = plot_training(loaded[0], args.output)
    elif args.kind == "benchmark":
        paths = plot_benchmark(loaded[0], args.output)
    else:
        results = {}
        for path, payload in zip(args.inputs, loaded):
            if not isinstance(payload.get("results"), list):
                raise ValueError(f"{path!r} has no 'results' list: not a retention result (memory-models retention)")
            name = payload.get("settings", {}).get("encoder") or Path(path).stem
            results[name if name not in results else f"{name} ({path})"] = payload["results"]
        paths = plot_retention(results, args.output, retention_title(loaded[0].get("settings", {})))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
