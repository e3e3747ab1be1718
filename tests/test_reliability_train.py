"""Fault injection for training runs: a run folder belongs to one run, resume is exact in every case, a corpus
without targets or a folder that cannot be written stops before the first step, and a kill between a
checkpoint's completion marker and its rename never leaves a checkpoint in use."""

import errno
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from memory_models.conversion import safe_io
from memory_models.training import run_folder, train
from memory_models.training.job import TrainJob
from memory_models.training.trainer import COMPLETE_MARKER, STAGING_DIR, last_complete_checkpoint

TINY = ["--train-documents", "48", "--eval-documents", "4", "--batch-size", "2", "--context", "16",
        "--eval-steps", "100"]
CLM = ["--preset", "transformer-clm-tiny", *TINY]


def args_for(output, *extra):
    return TrainJob.from_argv(["--output-dir", str(output), *extra])


def final_weights(output):
    return load_file(str(output / "final" / "model.safetensors"))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def checkpoints(output):
    return sorted(p.name for p in output.iterdir() if p.name.startswith("checkpoint-"))


RUN_A = [*CLM, "--max-steps", "2", "--save-steps", "1", "--lr_scheduler_type", "constant"]  # an extra step shows


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """One uninterrupted reference run (seed 0), shared by the tests below."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train.run(args_for(out, *RUN_A, "--seed", "0"))
    return out


def test_a_run_folder_belongs_to_one_run(tmp_path, run_a):
    """Run B (another seed) in run A's folder: --resume refuses naming the difference, a new run refuses
    without --overwrite; with --overwrite A's outputs go, and a later --resume continues B, not A. That resume
    finds B finished at max_steps and does no extra step (constant LR: one would change the weights)."""
    out = tmp_path / "run"
    shutil.copytree(run_a, out)
    a_final = final_weights(out)
    with pytest.raises(ValueError, match=r"another run's checkpoints.*seed: 0 \(recorded\) != 1 \(this run\)"):
        train.run(args_for(out, *RUN_A, "--seed", "1", "--resume"))
    with pytest.raises(ValueError, match=r"preset: 'transformer-clm-tiny' \(recorded\) != 'masked-mixer-tiny'"):
        train.run(args_for(out, "--preset", "masked-mixer-tiny", *TINY, "--max-steps", "2", "--resume"))
    with pytest.raises(ValueError, match="another run's outputs .*checkpoint-1"):
        train.run(args_for(out, *RUN_A, "--seed", "1"))
    with pytest.raises(ValueError, match="checkpoints of this run from an earlier start; pass --resume"):
        train.run(args_for(out, *RUN_A, "--seed", "0"))  # a forgotten --resume never retrains over them
    assert_same(final_weights(out), a_final)  # nothing of run A changed
    summary = train.run(args_for(out, *RUN_A, "--seed", "1", "--overwrite"))
    assert summary["config"]["seed"] == 1 and checkpoints(out) == ["checkpoint-1", "checkpoint-2"]
    assert json.loads((out / "run.json").read_text())["identity"]["seed"] == 1
    b_final = final_weights(out)
    assert any((a_final[k] != v).any() for k, v in b_final.items())  # B's weights, not A's
    resumed = train.run(args_for(out, *RUN_A, "--seed", "1", "--resume"))
    assert resumed["resumed_from"] == str(out / "checkpoint-2") and resumed["steps"] == 2
    assert checkpoints(out) == ["checkpoint-1", "checkpoint-2"]
    assert_same(final_weights(out), b_final)


def test_a_copied_checkpoint_carries_its_run(tmp_path, run_a):
    """A checkpoint copied into a new folder resumes only the run it belongs to (each checkpoint carries the
    run's identity), and then exactly: final weights equal the uninterrupted run's bit for bit."""
    out = tmp_path / "copy"
    out.mkdir()
    shutil.copytree(run_a / "checkpoint-1", out / "checkpoint-1")
    with pytest.raises(ValueError, match=r"seed: 0 \(recorded\) != 1 \(this run\)"):
        train.run(args_for(out, *RUN_A, "--seed", "1", "--resume"))
    summary = train.run(args_for(out, *RUN_A, "--seed", "0", "--resume"))
    assert summary["resumed_from"] == str(out / "checkpoint-1")
    assert_same(final_weights(out), final_weights(run_a))


def test_best_model_at_end_survives_rotation_and_resume(tmp_path):
    """--load_best_model_at_end with save_total_limit 1: the best checkpoint is published (not a staging path),
    is the one checkpoint kept, and is exported as final/ (also after a --resume)."""
    out = tmp_path / "run"
    common = [*CLM[:-2], "--max-steps", "2", "--save-steps", "1", "--eval-steps", "1", "--save_total_limit", "1",
              "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_clm_loss",
              "--greater_is_better", "true"]  # "best" = highest loss: the first checkpoint, not the last
    train.run(args_for(out, *common))
    assert checkpoints(out) == ["checkpoint-1"]
    state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(out / "checkpoint-1")
    best_weights = load_file(str(out / "checkpoint-1" / "model.safetensors"))
    assert_same(final_weights(out), best_weights)
    summary = train.run(args_for(out, *common, "--resume"))
    assert summary["resumed_from"] == str(out / "checkpoint-1") and summary["steps"] == 2
    assert checkpoints(out) == ["checkpoint-1"]
    assert_same(final_weights(out), best_weights)


def test_kill_after_the_completion_marker_resumes_exactly(tmp_path, monkeypatch, run_a):
    """Killed after checkpoint-2 got its COMPLETE marker but before its rename: resume picks checkpoint-1
    (the staged one is removed, never used), and the final weights equal an uninterrupted run's bit for bit."""
    killed = tmp_path / "killed"
    real = safe_io.replace_folder

    def kill_at_checkpoint_2(staged, final):
        if str(final).endswith("checkpoint-2"):
            raise KeyboardInterrupt("killed between the marker and the rename")
        return real(staged, final)

    monkeypatch.setattr(safe_io, "replace_folder", kill_at_checkpoint_2)
    with pytest.raises(KeyboardInterrupt):
        train.run(args_for(killed, *RUN_A, "--seed", "0"))
    monkeypatch.setattr(safe_io, "replace_folder", real)
    assert (killed / STAGING_DIR / "checkpoint-2" / COMPLETE_MARKER).exists()
    assert last_complete_checkpoint(killed) == str(killed / "checkpoint-1")
    summary = train.run(args_for(killed, *RUN_A, "--seed", "0", "--resume"))
    assert summary["resumed_from"] == str(killed / "checkpoint-1")
    assert not (killed / STAGING_DIR).exists()
    assert_same(final_weights(killed), final_weights(run_a))


@pytest.mark.parametrize("content, message", [
    (b"   \n\t\n  \n", "all .* documents are empty or whitespace-only"),
    (b"", "is empty \\(0 bytes\\)"),
    (b"caf\xe9 au lait\n" * 3, "not valid UTF-8: byte 3"),
    (b"a\nb\nc\nd\n" * 30, "gives no training targets: .* none with at least 2 tokens"),
])
def test_corpus_without_targets_stops_before_training(tmp_path, content, message):
    """No meaningless success: the error names the file and counts, and no run outputs are written."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message) as error:
        train.run(args_for(out, *CLM, "--max-steps", "2", "--dataset", str(corpus)))
    assert "corpus" in str(error.value)
    assert not out.exists()


def test_unwritable_run_folder_fails_before_the_first_step(tmp_path, monkeypatch):
    """A folder that cannot be written (read-only; root ignores modes, so the writer is patched) fails when the
    run is recorded, before any training step."""
    from transformers import TrainerCallback

    steps = []

    class CountSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(run_folder, "write_text_atomic", read_only)
    out = tmp_path / "run"
    job = args_for(out, *CLM, "--max-steps", "2")
    with pytest.raises(ValueError, match="is not writable: .*Read-only file system"):
        train.run(job, callbacks=[CountSteps()])
    assert steps == [] and checkpoints(out) == []


def test_user_folder_is_not_a_run_folder(tmp_path):
    """A non-empty folder memory-models did not create (or the current folder) is refused before training."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="did not create"):
        train.run(args_for(out, *CLM, "--max-steps", "2"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "final").mkdir()
    (tmp_path / "other" / "final" / "mine.txt").write_text("mine")
    safe_io.mark(tmp_path / "other", "run")
    with pytest.raises(ValueError, match="final/.* did not create"):
        train.run(args_for(tmp_path / "other", *CLM, "--max-steps", "2"))
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (tmp_path / "other" / "final" / "mine.txt").read_text() == "mine"


# --------------------------------------------------------------------------------------------- resuming onto changes
@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A 1-step run on a local corpus file with a saved word tokenizer (paths a user could change in place)."""
    from cases_memory import word_tokenizer, words

    root = tmp_path_factory.mktemp("local")
    generator = torch.Generator().manual_seed(0)
    (root / "corpus.txt").write_text("".join(words(torch.randint(3, 99, (12,), generator=generator).tolist()) + "\n"
                                             for _ in range(60)))
    word_tokenizer().save_pretrained(root / "tokenizer")
    argv = ["--preset", "transformer-clm-tiny", "--dataset", str(root / "corpus.txt"), "--tokenizer",
            str(root / "tokenizer"), "--train-documents", "40", "--eval-documents", "4", "--batch-size", "2",
            "--context", "8", "--max-steps", "1", "--save-steps", "1", "--eval-steps", "100"]
    train.run(args_for(root / "run", *argv))
    return root, argv


def test_resume_refuses_a_changed_corpus(local_run):
    """The corpus file at the same path changed since the run started: --resume refuses, naming its SHA-256."""
    root, argv = local_run
    corpus = root / "corpus.txt"
    original = corpus.read_text()
    try:
        corpus.write_text(original.replace("w", "w1"))
        with pytest.raises(ValueError, match=r"--resume: .* holds another run's checkpoints; differences: "
                                             r"corpus_sha256: '[0-9a-f]{16}' \(recorded\) != '[0-9a-f]{16}' \(this run\)"):
            train.run(args_for(root / "run", *argv, "--resume"))
    finally:
        corpus.write_text(original)


def test_resume_refuses_another_tokenizer_at_the_same_path(local_run):
    """Another tokenizer of the same size saved at the same path: --resume refuses, naming its SHA-256 (final/
    never ships a tokenizer the weights were not trained with)."""
    from cases_memory import word_tokenizer

    root, argv = local_run
    saved = root / "tokenizer-saved"
    shutil.copytree(root / "tokenizer", saved)
    try:
        shutil.rmtree(root / "tokenizer")
        word_tokenizer(prefix="v").save_pretrained(root / "tokenizer")
        with pytest.raises(ValueError, match=r"differences: tokenizer_sha256: '[0-9a-f]{16}' \(recorded\) != "
                                             r"'[0-9a-f]{16}' \(this run\)"):
            train.run(args_for(root / "run", *argv, "--resume"))
    finally:
        shutil.rmtree(root / "tokenizer")
        saved.rename(root / "tokenizer")


def test_resume_refuses_a_checkpoint_with_nan_or_truncated_weights(tmp_path, run_a):
    """--resume from a checkpoint holding NaN weights, or a truncated one, stops with one line naming it; the run's
    final/ and metrics.json stay as they were."""
    out = tmp_path / "run"
    shutil.copytree(run_a, out)
    weights = out / "checkpoint-2" / "model.safetensors"
    tensors = load_file(str(weights))
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(weights), metadata={"format": "pt"})
    before = final_weights(out), (out / "metrics.json").read_text()
    with pytest.raises(ValueError, match=f"^--resume '{out / 'checkpoint-2'}' holds NaN or inf in the tensors "
                                         f"\\['{key}'\\]\\.$"):
        train.run(args_for(out, *RUN_A, "--max-steps", "3", "--resume"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"^--resume: {weights} is unreadable \\(truncated or corrupt\\?\\): "):
        train.run(args_for(out, *RUN_A, "--resume"))
    assert_same(final_weights(out), before[0])
    assert (out / "metrics.json").read_text() == before[1]


def test_training_option_errors_are_one_line(tmp_path, capsys):
    """A bad TrainingArguments value is one line naming the option (not argparse's usage of every field), before any
    data work; nothing is written."""
    from memory_models.eval.cli import main as cli

    out = tmp_path / "run"
    code = cli(["train", *CLM, "--max-steps", "2", "--warmup_steps", "abc", "--output-dir", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (code, err[-1]) == (2, "memory-models train: error: argument --warmup_steps/--warmup-steps: invalid float "
                                  "value: 'abc' (a TrainingArguments option)")
    assert not any("usage:" in line for line in err) and not out.exists()


def test_full_disk_while_writing_a_checkpoint_says_no_space(tmp_path, monkeypatch):
    """torch's checkpoint writer loses the errno ("[enforce fail at inline_container.cc:672] ..."): on a filesystem
    with no space left that is the one line "no space left on RUN" (exit 1); with space left the error is kept."""
    from types import SimpleNamespace

    from memory_models.eval.cli import error_line

    failure = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5312 vs 5204")
    run_dir = tmp_path / "run"
    monkeypatch.setattr(safe_io.os, "statvfs", lambda path: SimpleNamespace(f_bavail=3, f_frsize=4096))
    with pytest.raises(safe_io.DiskFullError) as full, safe_io.locked(run_dir):
        raise failure
    assert error_line("memory-models train", full.value) == (f"memory-models train: error: no space left on {run_dir}",
                                                             1)
    monkeypatch.setattr(safe_io.os, "statvfs", lambda path: SimpleNamespace(f_bavail=10**6, f_frsize=4096))
    with pytest.raises(RuntimeError, match="inline_container"), safe_io.locked(run_dir):
        raise failure
