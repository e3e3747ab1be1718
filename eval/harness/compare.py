"""`memory-models eval`: lm-eval tasks on one or more saved models, side by side (the shape of Table 4).

    memory-models eval --model runs/causal/final --model runs/combined/final --tasks mmlu,longbench,swde
    memory-models eval --model runs/mt/final --tasks mmlu --no-memory --limit 50 --output-dir runs/eval
    memory-models lookalike --output lookalike   # offline look-alikes of mmlu / longbench / swde, then:
    memory-models eval --model runs/mt/final --tasks mmlu,longbench,swde --include-path lookalike --limit 2

Writes, under --output-dir: `<label>.json` per model (lm-eval's results), `comparison.json`,
`comparison.md` (one row per task and metric, one column per model) and `comparison.png` (when matplotlib
is installed). `--no-memory` adds, for every memory model, a column for the same checkpoint with its
memories ablated (every slot holds the filler).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from memory_models.conversion import safe_io
from memory_models.eval.harness.arguments import compare_parser
from memory_models.eval.harness.runner import (
    check_causal_lm, check_has_memory, evaluate_model, json_safe, metric_table, task_manager_for, with_rolling_window,
)
from memory_models.training.plot import picture_metadata, pyplot


def model_labels(model_dirs: list[str]) -> list[str]:
    """Short unique column names: the folder name, with parent folders added while two would collide."""
    parts = [Path(d.rstrip("/")).parts for d in model_dirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            break
        depth += 1
    if len(set(labels)) != len(labels):
        labels = [f"{label} ({index})" for index, label in enumerate(labels)]
    return labels


def markdown_table(tables: dict[str, dict[tuple[str, str], float]]) -> str:
    """Rows: (task, metric) in first-seen order; columns: the models (empty where a model lacks a metric)."""
    rows = list(dict.fromkeys(key for table in tables.values() for key in table))
    lines = ["| task | metric | " + " | ".join(tables) + " |", "|---|---|" + "---:|" * len(tables)]
    for task, metric in rows:
        cells = [f"{table[(task, metric)]:.4f}" if (task, metric) in table else "" for table in tables.values()]
        lines.append(f"| {task} | {metric.split(',')[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_png(tables: dict[str, dict[tuple[str, str], float]], path: Path) -> bool:
    """A grouped bar chart of the same comparison; False (with a message) when matplotlib is missing."""
    try:
        plt = pyplot()
    except ImportError:
        print(f"matplotlib is not installed: {path.name} skipped (pip install matplotlib); the table and JSON "
              f"are written", file=sys.stderr)
        return False
    rows = list(dict.fromkeys(key for table in tables.values() for key in table))
    width = 0.8 / max(1, len(tables))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) * max(1, len(tables)) ** 0.5 + 2), 4))
    for index, (label, table) in enumerate(tables.items()):
        xs = [r + (index - (len(tables) - 1) / 2) * width for r in range(len(rows))]
        axis.bar(xs, [table.get(row, 0.0) for row in rows], width, label=label)
    axis.set_xticks(range(len(rows)), [f"{task}\n{metric.split(',')[0]}" for task, metric in rows], fontsize=7,
                    rotation=30, ha="right")
    axis.set_ylabel("score")
    axis.legend(fontsize=8)
    figure.tight_layout()
    safe_io.write_file_atomic(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png",
                                                                     metadata=picture_metadata(".png")))
    plt.close(figure)
    return True


def run(args) -> dict:
    """Evaluate every model (and its ablation with --no-memory); write the JSONs, the table and the PNG into
    `--output-dir`, an evaluation folder (new, or one of ours; another kind only with --overwrite) held locked."""
    output_dir = Path(args.output_dir)
    inputs = [*(("--model", model) for model in args.model), ("--include-path", args.include_path),
              ("--tokenizer", args.tokenizer)]
    safe_io.check_target(output_dir, kind="eval", overwrite=args.overwrite, option="--output-dir", inputs=inputs)
    with safe_io.locked(output_dir):
        return _evaluate(args, output_dir)


def _evaluate(args, output_dir: Path) -> dict:
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    if not tasks:
        raise ValueError(f"--tasks names no task: {args.tasks!r}")
    if args.batch_size < 1 or (args.limit is not None and args.limit <= 0):
        raise ValueError(f"--batch-size and --limit must be positive, got {args.batch_size} and {args.limit}")
    limit = int(args.limit) if args.limit is not None and args.limit >= 1 else args.limit
    runs = []  # fail before any evaluation: models we cannot evaluate (or ablate), unknown tasks
    for label, model_dir in zip(model_labels(args.model), args.model):
        config = check_causal_lm(model_dir, args.trust_remote_code)
        if args.rolling_context is not None:
            with_rolling_window(model_dir, config, args.rolling_context)
        runs.append((label, model_dir, False))
        if args.no_memory:
            check_has_memory(model_dir)
            runs.append((f"{label} (no memory)", model_dir, True))
    unknown = [task for task in tasks if task not in task_manager_for(args.include_path, tasks).all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval tasks {unknown}; pass --include-path for local tasks")
    output_dir.mkdir(parents=True, exist_ok=True)
    safe_io.recover_all(output_dir)
    safe_io.mark(output_dir, "eval")
    tables, summary = {}, {"tasks": tasks, "limit": limit, "models": {}}
    for label, model_dir, no_memory in runs:
        print(f"[memory-models eval] {label}: {model_dir} on {','.join(tasks)}", file=sys.stderr)
        results = evaluate_model(model_dir, tasks, limit=limit, batch_size=args.batch_size,
                                 include_path=args.include_path, no_memory=no_memory, device=args.device,
                                 tokenizer=args.tokenizer, log_samples=args.log_samples,
                                 max_length=args.max_length, num_fewshot=args.num_fewshot, seed=args.seed,
                                 rolling_context=args.rolling_context, trust_remote_code=args.trust_remote_code)
        file_name = label.replace("/", "__").replace(" ", "_").replace("(", "").replace(")", "") + ".json"
        safe_io.write_text_atomic(output_dir / file_name, json.dumps(json_safe(results), indent=2))
        tables[label] = metric_table(results)
        summary["models"][label] = {"path": model_dir, "no_memory": no_memory, "results_file": file_name,
                                    "metrics": {f"{task} {metric}": value for (task, metric), value
                                                in tables[label].items()}}
    table = markdown_table(tables)
    safe_io.write_text_atomic(output_dir / "comparison.md", table + "\n")
    safe_io.write_text_atomic(output_dir / "comparison.json", json.dumps(summary, indent=2))
    summary["png"] = comparison_png(tables, output_dir / "comparison.png")
    print(table)
    return summary


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(compare_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
