"""DDP on CPU: two gloo processes under torchrun run the training command and end with identical replicas.

Run as a script (`torchrun --nproc_per_node 2 tests/test_distributed.py OUT -- <train options>`), this file is
the worker: it runs `training.train.run` (exactly what `torchrun -m training.train` runs) and each rank saves
its own copy of the weights, so the test can compare the replicas.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OPTIONS = ["--preset", "memory-transformer-tiny", "--objective", "combined", "--dataset", "records",
                 "--train-documents", "32", "--eval-documents", "4", "--max-steps", "3", "--batch-size", "2",
                 "--eval-steps", "3", "--save-steps", "3", "--learning-rate", "1e-3"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_gloo_processes_keep_identical_replicas(tmp_path):
    """2 ranks x 3 steps (ddp_find_unused_parameters=False): both ranks hold bit-identical weights that
    differ from the initial ones, and the run records world_size 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(Path(__file__).resolve()), str(tmp_path), "--output-dir",
               str(tmp_path / "run"), *TRAIN_OPTIONS]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    initial = torch.load(tmp_path / "initial0.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["config"]["world_size"] == 2 and summary["steps"] == 3
    assert (tmp_path / "run" / "checkpoint-3" / "COMPLETE").exists()


def _worker(dump_dir: str, options: list[str]) -> None:
    """One rank: train with `options`, saving this rank's weights before and after training."""
    from transformers import TrainerCallback

    from training import train

    rank = int(os.environ["RANK"])

    class DumpWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{dump_dir}/initial{rank}.pt")

        def on_train_end(self, args, state, control, model=None, **kwargs):
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{dump_dir}/rank{rank}.pt")

    args, extras = train.parse_args(options)
    train.run(args, extras, callbacks=[DumpWeights()])


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2:])
