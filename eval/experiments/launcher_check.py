"""Check that a run's numbers do not depend on the launcher: the same global batch of 4 rows trained as

* one process, batch 4;
* one process, batch 2 x 2 gradient-accumulation steps;
* two gloo processes under `torchrun`, batch 1 x 2 accumulation steps each (DDP and accumulation together);

must log the same training losses (`loss` and, for the combined objective, `loss_clm` / `loss_copy`), report the
same eval metrics and end with the same weights. Prints one row per launcher and writes the table as JSON.

    memory-models launcher-check --output-dir runs/launcher-check     # about 2 minutes on 2 CPU cores
    memory-models launcher-check --preset autoencoder-tiny --objective autoencode --context 16 \\
        --output-dir runs/launcher-check-ae

`tests/test_distributed.py` asserts the same equalities.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from memory_models.conversion.safe_io import all_ours, claim_folder, locked
from memory_models.eval.experiments.arguments import launcher_check_parser

LAUNCHERS = {
    "1 process, batch 4": (1, ["--batch-size", "4"]),
    "1 process, batch 2 x 2 accumulation": (1, ["--batch-size", "2", "--gradient_accumulation_steps", "2",
                                                "--per_device_eval_batch_size", "4"]),
    "2 processes (torchrun), batch 1 x 2 accumulation": (2, ["--batch-size", "1", "--gradient_accumulation_steps",
                                                             "2", "--per_device_eval_batch_size", "2"]),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_launcher(processes: int, options: list[str], output: Path) -> dict:
    """Train in a subprocess (`python -m memory_models.training.train`, or `torchrun` for 2 processes); return
    metrics.json."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [sys.executable, "-m", "memory_models.training.train"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                    "--master_port", str(_free_port()), "-m", "memory_models.training.train"]
    proc = subprocess.run([*launcher, "--output-dir", str(output), *options], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(launcher)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((output / "metrics.json").read_text())


def max_weight_difference(folder: Path, reference: Path) -> float:
    """Largest absolute difference between two runs' final weights."""
    got, expected = load_file(folder / "final" / "model.safetensors"), load_file(reference / "final" / "model.safetensors")
    return max(float((got[k] - expected[k]).abs().max()) for k in expected)


def row(name: str, summary: dict, weight_difference: float) -> dict:
    """The numbers compared across launchers."""
    streams = summary.get("train_stream_loss_history", {})
    values = {"launcher": name, "loss": [round(v, 5) for _, v in summary["train_loss_history"]]}
    values.update({key: [round(v, 5) for _, v in history] for key, history in streams.items()})
    values.update({key: round(value, 5) for key, value in sorted(summary["final"].items())
                   if key.startswith("eval_") and key.endswith(("_loss", "_entropy_ratio", "_accuracy"))})
    values["max |weights - reference|"] = weight_difference
    return values


def main(argv=None) -> int:
    """`memory-models launcher-check`: the same run under every launcher; one row each."""
    args = launcher_check_parser().parse_args(argv)
    common = ["--preset", args.preset, "--objective", args.objective, "--dataset", "records", "--train-documents",
              "32", "--eval-documents", "4", "--max-steps", str(args.steps), "--eval-steps", str(args.steps),
              "--save-steps", str(args.steps), "--learning-rate", "1e-2", "--logging_steps", "1"]
    common += ["--context", str(args.context)] if args.context else []
    output = claim_folder(args.output_dir, kind="launcher-check", earlier=lambda folder: all_ours(
        folder.glob("launcher-*")))  # new, empty or ours (one of a version before the marker holds our runs)
    with locked(output):
        return _check(common, output)


def _check(common: list, output: Path) -> int:
    rows, reference = [], None
    for index, (name, (processes, options)) in enumerate(LAUNCHERS.items()):
        folder = output / f"launcher-{index}"
        summary = run_launcher(processes, [*common, *options], folder)
        reference = reference or folder
        rows.append(row(name, summary, max_weight_difference(folder, reference)))
    for values in rows:
        print(" | ".join(f"{k}: {v}" for k, v in values.items()))
    (output / "launcher_check.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
