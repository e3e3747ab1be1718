"""Memory banks encoded by 2 gloo processes: the same bank as 1 process; a killed or failing rank never leaves a
bank that looks complete, and rerunning the command finishes it, whichever rank wrote which shard.

Run as a script (`torchrun --nproc_per_node 2 tests/test_bank_distributed.py [--fail RANK:CALL:kill|raise]
<encode options>`), this file is the worker: it runs `memory-models encode`, after making rank RANK die (SIGKILL)
or raise in its CALL-th encoder batch of shards when `--fail` is given.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bank_fixtures
from memory_models.eval.banks import encode as memory_encode
from memory_models.eval.banks.bank import load_memory_bank, verify_bank

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(launcher: str, options: list[str]) -> subprocess.CompletedProcess:
    """This file as the worker of 2 CPU processes under `torchrun` or `accelerate launch`."""
    port = str(_free_port())
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                   port]
    env = {**ENV, "ACCELERATE_USE_CPU": "true"} if launcher == "accelerate" else ENV
    return subprocess.run([*command, str(Path(__file__).resolve()), *options], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny model and corpus (`bank_fixtures`) and the bank one process writes (12 shards of 2 documents)."""
    root = tmp_path_factory.mktemp("bank-distributed")
    bank_fixtures.save_model_and_corpus(root)
    assert memory_encode.main(bank_fixtures.encode_args(root, root / "bank")) == 0
    return root


def assert_same_bank(folder, reference_folder) -> None:
    """Same shard boundaries, ids, texts and tokens; memories equal within float32 tolerance (kernels may differ
    with the thread count)."""
    bank, expected = load_memory_bank(folder), load_memory_bank(reference_folder)
    assert [(s["name"], s["num_documents"]) for s in bank.manifest["shards"]] == [
        (s["name"], s["num_documents"]) for s in expected.manifest["shards"]]
    assert bank.ids == expected.ids and verify_bank(folder)["documents"] == bank_fixtures.NUM_DOCUMENTS
    for doc_id in expected.ids:
        got, want = bank.document(doc_id), expected.document(doc_id)
        for key in ("text", "input_ids", "tail_ids"):
            assert list(got[key]) == list(want[key]) if key != "text" else got[key] == want[key], (doc_id, key)
        torch.testing.assert_close(bank.memories(doc_id), expected.memories(doc_id))


def test_two_processes_write_the_bank_one_process_writes(reference, tmp_path):
    """`accelerate launch` with 2 CPU processes: each rank writes every other shard (recorded with its rank and
    host) and the bank equals the one-process bank."""
    proc = launch("accelerate", bank_fixtures.encode_args(reference, tmp_path / "bank"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "24 documents in 12 shards" in proc.stdout and "processes x threads: 2 x 1" in proc.stdout
    shards = load_memory_bank(tmp_path / "bank").manifest["shards"]
    assert [s["rank"] for s in shards] == [0, 1] * 6
    assert {s["host"] for s in shards} == {socket.gethostname()}
    assert_same_bank(tmp_path / "bank", reference / "bank")


def test_killed_or_failing_rank_then_rerun_finishes_the_bank(reference, tmp_path):
    """torchrun, 2 processes: rank 1 killed (SIGKILL) in its second shard -> the run fails and the bank is
    incomplete; a rerun where rank 1 raises -> every rank fails naming rank 1's error, still incomplete; a rerun
    in one process finishes the bank, keeping the shards both ranks wrote, equal to the one-process bank."""
    bank_folder = tmp_path / "bank"
    options = bank_fixtures.encode_args(reference, bank_folder)
    killed = launch("torchrun", ["--fail", "1:2:kill", *options])
    assert killed.returncode != 0
    with pytest.raises(ValueError, match="incomplete"):
        load_memory_bank(bank_folder)
    failing = launch("torchrun", ["--fail", "1:1:raise", *options])
    assert failing.returncode != 0
    output = failing.stdout + failing.stderr
    assert "ValueError: injected failure on rank 1" in output, output[-4000:]
    assert f"rank 1 (host {socket.gethostname()}) failed: ValueError: injected failure on rank 1" in output
    with pytest.raises(ValueError, match="incomplete"):
        load_memory_bank(bank_folder)
    assert memory_encode.main(options) == 0
    writers = {(s["rank"], s["host"]) for s in load_memory_bank(bank_folder).manifest["shards"]}
    assert {rank for rank, _ in writers} == {0, 1}
    assert_same_bank(bank_folder, reference / "bank")


def _worker(argv: list[str]) -> int:
    """One rank of `memory-models encode`, made to fail as `--fail RANK:CALL:kill|raise` says."""
    if argv[0] == "--fail":
        rank, call, how = argv[1].split(":")
        argv, calls, original = argv[2:], [], memory_encode.encode_documents

        def failing(*args, **kwargs):
            calls.append(1)
            if os.environ["RANK"] == rank and len(calls) == int(call):
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise ValueError(f"injected failure on rank {rank}")
            return original(*args, **kwargs)

        memory_encode.encode_documents = failing
    return memory_encode.main(argv)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
