"""`memory-models train`: outputs, Hub-ready checkpoints, objective checks, resumption and atomic checkpoints."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from memory_models.conversion.isolation import lint_hub_folder
from memory_models.training import train
from memory_models.training.job import TrainJob
from memory_models.eval.cli import main as cli_main
from memory_models.training.trainer import COMPLETE_MARKER, MemoryTrainer, last_complete_checkpoint
from tokenizer_loading import assert_tokenizer_loads_quietly

TINY = ["--train-documents", "64", "--eval-documents", "8", "--batch-size", "2", "--seed", "0"]


def run_cli(tmp_path, *extra, name="run"):
    output = tmp_path / name
    return output, TrainJob.from_argv(["--output-dir", str(output), *TINY, *extra])


def read_png_size(path):
    """(width, height) of a PNG, read with matplotlib (the plots' own dependency)."""
    image = pytest.importorskip("matplotlib.image").imread(path)
    return image.shape[1], image.shape[0]


def test_train_memory_model_writes_hub_ready_outputs(tmp_path):
    """A combined-objective run via the CLI writes metrics.json (loss, H_r, accuracy, copy accuracy), a PNG
    loss curve, Hub-ready checkpoints (code + auto_map + tokenizer + completion marker) and final/."""
    output = tmp_path / "run"
    assert cli_main(["train", "--preset", "memory-transformer-tiny", "--objective", "combined", "--max-steps", "4",
                     "--eval-steps", "2", "--output-dir", str(output), *TINY]) == 0
    summary = json.loads((output / "metrics.json").read_text())
    final = summary["final"]
    for key in ("eval_clm_loss", "eval_clm_entropy_ratio", "eval_clm_accuracy", "eval_copy_accuracy",
                "eval_blank_copy_loss", "eval_blank_copy_accuracy"):
        assert key in final and final[key] == final[key], key  # present and not NaN
    # every objective is watched on held-out rows while training, blank copy included
    assert [step for step, _ in summary["eval_history"]["eval_blank_copy_accuracy"]] == [2, 4]
    assert summary["steps"] == 4 and summary["config"]["objective"] == "combined"
    assert summary["config"]["vocab_size"] == 8192 and summary["config"]["context"] == 32
    width, height = read_png_size(output / "loss_curve.png")
    assert width > height > 200 and (output / "loss_curve.svg").is_file()
    for folder in (output / "checkpoint-4", output / "final"):
        config = json.loads((folder / "config.json").read_text())
        assert config["auto_map"]["AutoModelForCausalLM"].startswith("modeling_memory.")
        assert config["copy_delimiter_token_id"] == 3 and config["pad_token_id"] == 1
        assert (folder / "modeling_memory.py").exists() and (folder / "tokenizer.json").exists()
        assert lint_hub_folder(folder) == []
        assert_tokenizer_loads_quietly(folder)
    assert (output / "checkpoint-4" / COMPLETE_MARKER).exists()
    assert not (output / ".staging").exists()


@pytest.mark.parametrize("preset, objective, message", [
    ("transformer-clm-tiny", "autoencode", "needs an autoencoder preset"),
    ("autoencoder-tiny", "copy", "needs a causal model"),
])
def test_objective_model_mismatch_raises(tmp_path, preset, objective, message):
    """autoencode needs an autoencoder; every other objective a causal model."""
    _, job = run_cli(tmp_path, "--preset", preset, "--objective", objective)
    with pytest.raises(ValueError, match=message):
        train.build_model(job, train.load_tokenizer(None))


def test_bad_options_raise(tmp_path):
    """Bad or unknown options fail with a ValueError naming them."""
    with pytest.raises(ValueError, match="--max-steps must be a positive integer, got 0"):
        run_cli(tmp_path, "--preset", "transformer-clm-tiny", "--max-steps", "0")
    with pytest.raises(ValueError, match="--preset NAME or --init-from"):
        run_cli(tmp_path)
    _, job = run_cli(tmp_path, "--preset", "transformer-clm-tiny", "--no-memory")
    with pytest.raises(ValueError, match="--no-memory needs a memory model"):
        train.build_model(job, train.load_tokenizer(None))
    with pytest.raises(ValueError, match="unknown options --bogus_option 1"):
        run_cli(tmp_path, "--preset", "transformer-clm-tiny", "--bogus_option", "1")


def test_training_arguments_pass_through_and_defaults(tmp_path):
    """Extra `--key value` pairs reach TrainingArguments; lr defaults follow spec §5.8."""
    tokenizer = train.load_tokenizer(None)
    _, job = run_cli(tmp_path, "--preset", "masked-mixer-tiny", "--max-steps", "30", "--warmup_steps",
                              "7", "--gradient_accumulation_steps", "2")
    training_args = train.training_arguments(job, train.preset_config(job, tokenizer))
    assert training_args.warmup_steps == 7 and training_args.gradient_accumulation_steps == 2
    assert training_args.learning_rate == 5e-4 and training_args.eval_steps == 6
    assert training_args.ddp_find_unused_parameters is False and training_args.remove_unused_columns is False
    _, job = run_cli(tmp_path, "--preset", "memory-transformer-tiny")
    assert train.default_learning_rate(train.preset_config(job, tokenizer)) == 2e-4


class Crash(TrainerCallback):
    """Simulate a killed run: raise at the end of step `step`."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def _losses_after(output, step):
    state = json.loads((output / "checkpoint-6" / "trainer_state.json").read_text())
    return [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h and h["step"] > step]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, capsys):
    """Killed after checkpoint-4 and resumed with --resume: same final weights and losses as one run; the
    resumed run says which checkpoint it continues."""
    common = ["--preset", "memory-transformer-tiny", "--objective", "combined", "--max-steps", "6",
              "--save-steps", "2", "--eval-steps", "100", "--logging_steps", "1"]
    straight, job = run_cli(tmp_path, *common, name="straight")
    train.run(job)
    killed, job = run_cli(tmp_path, *common, name="killed")
    with pytest.raises(KeyboardInterrupt):
        train.run(job, callbacks=[Crash(5)])
    assert last_complete_checkpoint(killed) == str(killed / "checkpoint-4")
    _, job = run_cli(tmp_path, *common, "--resume", name="killed")
    capsys.readouterr()
    summary = train.run(job)
    assert summary["resumed_from"] == str(killed / "checkpoint-4") and summary["steps"] == 6
    assert f"--resume: resuming from {killed / 'checkpoint-4'}\n" in capsys.readouterr().out
    expected, got = load_file(straight / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    assert _losses_after(killed, 4) == _losses_after(straight, 4)


def test_failed_save_never_becomes_latest(tmp_path, monkeypatch):
    """A save that dies half-way leaves no checkpoint-N folder; --resume uses the previous complete one."""
    calls = {"n": 0}
    original = MemoryTrainer._save_rng_state

    def failing_rng_save(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(self, output_dir)

    monkeypatch.setattr(MemoryTrainer, "_save_rng_state", failing_rng_save)
    common = ["--preset", "transformer-clm-tiny", "--context", "16", "--max-steps", "6", "--save-steps", "2", "--bf16",
              "--eval-steps", "100"]
    output, job = run_cli(tmp_path, *common)
    with pytest.raises(OSError, match="disk full"):
        train.run(job)
    assert (output / "checkpoint-2" / COMPLETE_MARKER).exists()
    assert not (output / "checkpoint-4").exists()  # the half-written save stayed in staging
    (output / "checkpoint-9").mkdir()  # a foreign, incomplete folder is never "latest" either
    assert last_complete_checkpoint(output) == str(output / "checkpoint-2")
    _, job = run_cli(tmp_path, *common, "--resume")
    summary = train.run(job)
    assert summary["resumed_from"] == str(output / "checkpoint-2") and summary["steps"] == 6
    assert (output / "checkpoint-6" / COMPLETE_MARKER).exists()


@pytest.mark.parametrize("preset", ["memory-transformer-tiny", "memory-mixer-tiny", "autoencoder-tiny"])
def test_fsdp_config_wraps_the_blocks_the_model_has(preset):
    """training/fsdp_config.yaml names no layer classes: accelerate builds the wrap policy from the model."""
    import functools
    import pathlib

    from accelerate.utils import FullyShardedDataParallelPlugin

    from memory_models.configuration import build_model, get_preset

    yaml_text = (pathlib.Path(__file__).parents[1] / "training" / "fsdp_config.yaml").read_text()
    assert "fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP" in yaml_text
    assert "fsdp_transformer_layer_cls_to_wrap" not in yaml_text
    model = build_model(get_preset(preset))
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)
    assert isinstance(plugin.auto_wrap_policy, functools.partial)
    wrapped = {cls.__name__ for cls in plugin.auto_wrap_policy.keywords["transformer_layer_cls"]}
    assert wrapped == set(model._no_split_modules) and wrapped <= {"LlamaDecoderLayer", "MaskedMixerBlock"}
