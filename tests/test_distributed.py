"""Training numbers that do not depend on the launcher: one process with a batch of 4, one process with 2 x 2
gradient-accumulation micro-batches, and two gloo processes under torchrun with 1 x 2 micro-batches each see the
same global batches and must log the same losses (`loss`, `loss_clm`, `loss_copy`), report the same eval metrics
and end with the same weights.

Run as a script (`torchrun --nproc_per_node 2 tests/test_distributed.py OUT -- <train options>`), this file is
the worker: it runs `memory_models.training.train.run` (exactly what `torchrun -m memory_models.training.train` runs)
and each rank saves
its own copy of the weights, so the test can compare the replicas.
"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
# 2 steps of the combined objective (both streams, so every loss group is exercised; a high learning rate so
# that eval accuracy is already above 0); the eval set (4 rows) is one global eval batch of 4 in every launcher.
COMMON = ["--preset", "memory-transformer-tiny", "--objective", "combined", "--dataset", "records",
          "--train-documents", "32", "--eval-documents", "4", "--max-steps", "2", "--eval-steps", "2",
          "--save-steps", "2", "--learning-rate", "1e-2", "--logging_steps", "1"]
ONE_BATCH = ["--batch-size", "4"]
ACCUMULATED = ["--batch-size", "2", "--gradient_accumulation_steps", "2", "--per_device_eval_batch_size", "4"]
TWO_PROCESSES = ["--batch-size", "1", "--gradient_accumulation_steps", "2", "--per_device_eval_batch_size", "2"]
EVAL_KEYS = ("eval_clm_loss", "eval_clm_entropy_ratio", "eval_clm_accuracy", "eval_copy_loss",
             "eval_copy_entropy_ratio", "eval_copy_accuracy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_in_process(output: Path, options: list[str]) -> dict:
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    job = TrainJob.from_argv(["--output-dir", str(output), *COMMON, *options])
    return train.run(job)


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory):
    """The reference: one process, batch 4, no accumulation."""
    output = tmp_path_factory.mktemp("one_batch") / "run"
    return output, _train_in_process(output, ONE_BATCH)


def _assert_same_numbers(got: tuple, expected: tuple) -> None:
    """Equal logged losses (total and per stream), eval metrics and final weights (float tolerance)."""
    (got_dir, got_summary), (expected_dir, expected_summary) = got, expected
    histories = ("train_loss_history", "train_stream_loss_history")
    for key in histories:
        assert got_summary[key], key
        torch.testing.assert_close(torch.tensor(_flat(got_summary[key]), dtype=torch.float64),
                                   torch.tensor(_flat(expected_summary[key]), dtype=torch.float64),
                                   rtol=1e-4, atol=1e-4, msg=key)
    for key in EVAL_KEYS:
        got_value, expected_value = got_summary["final"][key], expected_summary["final"][key]
        assert math.isclose(got_value, expected_value, rel_tol=1e-4, abs_tol=1e-5), (key, got_value, expected_value)
        if key.endswith(("entropy_ratio", "accuracy")):
            assert 0.0 <= got_value <= 1.0, (key, got_value)
    got_weights = load_file(got_dir / "final" / "model.safetensors")
    expected_weights = load_file(expected_dir / "final" / "model.safetensors")
    assert got_weights.keys() == expected_weights.keys()
    for key in got_weights:
        torch.testing.assert_close(got_weights[key], expected_weights[key], rtol=1e-4, atol=1e-4, msg=key)


def _flat(history) -> list[float]:
    if isinstance(history, dict):
        return [value for key in sorted(history) for value in _flat(history[key])]
    return [float(value) for pair in history for value in pair]


def test_logged_losses_are_the_weighted_stream_losses(one_batch):
    """`loss = clm_loss_weight * loss_clm + copy_loss_weight * loss_copy` (1 and 1) at every log, and the
    stream losses are on the eval losses' scale (one token mean each, not a sum)."""
    _, summary = one_batch
    streams = summary["train_stream_loss_history"]
    assert [s for s, _ in streams["loss_clm"]] == [s for s, _ in summary["train_loss_history"]] == [1, 2]
    for (_, total), (_, clm), (_, copy) in zip(summary["train_loss_history"], streams["loss_clm"], streams["loss_copy"]):
        assert math.isclose(total, clm + copy, rel_tol=1e-4), (total, clm, copy)
        assert math.log(8192) * 0.8 < clm < math.log(8192) * 1.2  # ~ln V after 2 steps, not 2 ln V
    assert summary["final"]["eval_clm_loss"] < math.log(8192) * 1.2
    assert summary["final"]["eval_clm_accuracy"] > 0 and summary["final"]["eval_copy_accuracy"] > 0


def test_gradient_accumulation_matches_one_batch(tmp_path, one_batch):
    """Batch 2 x 2 accumulation steps == batch 4: same logged losses, eval metrics and weights."""
    output = tmp_path / "accumulated"
    summary = _train_in_process(output, ACCUMULATED)
    assert summary["config"]["gradient_accumulation_steps"] == 2
    _assert_same_numbers((output, summary), one_batch)


def test_torchrun_two_gloo_processes_match_one_process(tmp_path, one_batch):
    """2 gloo ranks x batch 1 x 2 accumulation steps (DDP and accumulation together, ddp_find_unused_parameters
    False): bit-identical replicas that moved, and the same numbers as one process with batch 4."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(Path(__file__).resolve()), str(tmp_path), "--output-dir",
               str(tmp_path / "run"), *COMMON, *TWO_PROCESSES]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    initial = torch.load(tmp_path / "initial0.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["config"]["world_size"] == 2 and summary["steps"] == 2
    assert (tmp_path / "run" / "checkpoint-2" / "COMPLETE").exists()
    _assert_same_numbers((tmp_path / "run", summary), one_batch)


def _worker(dump_dir: str, options: list[str]) -> None:
    """One rank: train with `options`, saving this rank's weights before and after training."""
    from transformers import TrainerCallback

    from memory_models.training import train
    from memory_models.training.job import TrainJob

    rank = int(os.environ["RANK"])

    class DumpWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{dump_dir}/initial{rank}.pt")

        def on_train_end(self, args, state, control, model=None, **kwargs):
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{dump_dir}/rank{rank}.pt")

    job = TrainJob.from_argv(options)
    train.run(job, callbacks=[DumpWeights()])


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2:])
