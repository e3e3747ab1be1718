"""FSDP2 on CPU: two gloo processes shard a converted (pretrained-decoder) memory model with `fully_shard`, train,
and end in a consolidated Hub folder equal to a single-process run's weights.

Run as a script (`torchrun --nproc_per_node 2 tests/test_fsdp.py MODEL_DIR OUT_DIR`), this file is the worker.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
STEPS, GLOBAL_BATCH, LENGTH, LR = 3, 4, 12, 1e-2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _batches(vocab_size: int):
    """Fixed full-length rows (no padding: each rank's token mean is then the global mean's half)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab_size - 8, (GLOBAL_BATCH, LENGTH), generator=generator) for _ in range(STEPS)]


def _train(model, rows_of):
    """STEPS AdamW steps on this process's rows of each global batch."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    for ids in _batches(model.config.vocab_size):
        ids = rows_of(ids)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_fsdp2_two_cpu_processes_match_single_process(tmp_path):
    """2 ranks hold DTensor shards (half the rows each) while training; the consolidated final folder equals a
    single-process run on the whole batches within float tolerance and differs from the initial weights."""
    from memory_models.conversion.export_to_hub import export_model
    from memory_models.conversion.pretrained_decoder import convert
    from pretrained_lookalike import make_decoder_folder
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model, tokenizer = convert(make_decoder_folder(tmp_path / "llama", "llama"), encoder_preset="autoencoder-tiny",
                               chunk_size=4, num_memory_slots=4, dtype="float32")
    initial = export_model(model, tmp_path / "initial", tokenizer)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(Path(__file__).resolve()), str(initial), str(tmp_path)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for rank in (0, 1):
        shards = json.loads((tmp_path / f"shards{rank}.json").read_text())
        assert shards["type"] == "DTensor" and 2 * shards["local_rows"] == shards["global_rows"]
    single = _train(AutoModelForCausalLM.from_pretrained(initial, dtype=torch.float32), lambda ids: ids)
    sharded = load_file(tmp_path / "fsdp" / "model.safetensors")
    before = load_file(initial / "model.safetensors")
    expected = {k: v for k, v in single.state_dict().items() if k in sharded}
    assert expected.keys() == sharded.keys() == before.keys()
    for key, value in expected.items():
        torch.testing.assert_close(sharded[key], value, rtol=1e-4, atol=1e-4, msg=key)  # updates are ~3e-2
    assert sum(not torch.equal(before[k], sharded[k]) for k in before) > len(before) // 2
    assert (tmp_path / "fsdp" / "modeling_memory.py").exists()


def test_train_refuses_fsdp_on_cpu(tmp_path):
    """accelerate drops FSDP on CPU: `train --fsdp` says so instead of silently training replicas."""
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    if torch.cuda.is_available():
        pytest.skip("FSDP through the Trainer is available on GPUs")
    job = TrainJob.from_argv(["--preset", "memory-transformer-tiny", "--output-dir", str(tmp_path),
                              "--fsdp", "full_shard auto_wrap"])
    with pytest.raises(ValueError, match="accelerate ignores FSDP there"):
        train.training_arguments(job, train.preset_config(job, train.load_tokenizer(None)))


def _worker(model_dir: str, out_dir: str) -> None:
    """One rank: shard, train on this rank's half of each batch, record the shards, save the consolidated model."""
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    import memory_models.modeling_memory  # noqa: F401  (registers our classes: no trust_remote_code needed)
    from memory_models.conversion.export_to_hub import export_model
    from memory_models.training.fsdp_cpu import full_state_dict, shard

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = shard(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    rows = GLOBAL_BATCH // world
    _train(model, lambda ids: ids[rank * rows : (rank + 1) * rows])
    weight = model.decoder.model.layers[0].self_attn.q_proj.weight
    Path(f"{out_dir}/shards{rank}.json").write_text(json.dumps(
        {"type": type(weight).__name__, "local_rows": weight.to_local().shape[0], "global_rows": weight.shape[0]}))
    state = full_state_dict(model)
    if rank == 0:
        fresh = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        fresh.load_state_dict(state)
        export_model(fresh, f"{out_dir}/fsdp")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
