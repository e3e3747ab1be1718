"""The guards a hostile but honest user runs into: folder kinds (no export over a training run), finite or refused
weights, one writer per folder, no foreign code without consent, modes from the umask, config and generation
checks that name what is wrong, and one line for an interrupt or a full disk. Each case goes through the command
line as a user types it and checks the one line the user sees."""

import argparse
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from safetensors.torch import load_file, save_file

from cases_memory import memory_config, word_tokenizer, words
from memory_models.conversion import safe_io
from memory_models.conversion.export_to_hub import export_model
from memory_models.eval.banks.encode import encode_bank
from memory_models.eval.cli import COMMANDS
from memory_models.eval.cli import main as cli
from memory_models.modeling_memory import MemoryForCausalLM
from memory_models.training import train
from memory_models.training.job import TrainJob
from memory_models.training.trainer import MemoryTrainer

ROOT = Path(__file__).resolve().parents[1]
CLM = ["--preset", "transformer-clm-tiny", "--train-documents", "24", "--eval-documents", "4", "--batch-size", "2",
       "--context", "16", "--eval-steps", "100", "--max-steps", "2", "--save-steps", "1"]


def documents(texts, ids) -> datasets.Dataset:
    """A corpus for `encode_bank`."""
    return datasets.Dataset.from_dict({"text": texts, "id": ids})


def run(capsys, *argv) -> tuple[int, str]:
    """Run `memory-models ARGV`; returns the exit code and the last line on stderr, which must be the only line
    about the error (no traceback) and name only options the command has."""
    code = cli([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    parsers = [COMMANDS[argv[0]].parser()]
    for action in parsers[0]._actions:  # a command with subcommands (`benchmark memory`): the named one's options too
        if isinstance(action, argparse._SubParsersAction) and len(argv) > 1 and str(argv[1]) in action.choices:
            parsers.append(action.choices[str(argv[1])])
    options = {flag for parser in parsers for action in parser._actions for flag in action.option_strings}
    for flag in re.findall(r"(?<![\w/-])--[a-z][a-z-]*", last):
        assert flag in options, f"{argv[0]}'s message names {flag}, which it does not have: {last}"
    return code, last


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny memory model with its tokenizer (chunk 4, 4 slots: a bounded window of 16 tokens), exported, and
    a JSON-lines corpus of 3 documents."""
    root = tmp_path_factory.mktemp("guards")
    torch.manual_seed(0)
    export_model(MemoryForCausalLM(memory_config()), root / "model", word_tokenizer())
    generator = torch.Generator().manual_seed(1)
    documents = [words(torch.randint(3, 99, (n,), generator=generator).tolist()) for n in (9, 13, 6)]
    (root / "corpus.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                                               for i, t in enumerate(documents)))
    return root


def copy_model(workspace, tmp_path, edit_weights=None, edit_config=None) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(workspace / "model", folder)
    if edit_weights is not None:
        tensors = load_file(str(folder / "model.safetensors"))
        edit_weights(tensors)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if edit_config is not None:
        text = (folder / "config.json").read_text()
        (folder / "config.json").write_text(edit_config(text))
    return folder


# --------------------------------------------------------------------------------------------- folder kinds
def fake_run(workspace, folder: Path) -> None:
    """A training run folder as `memory-models train` leaves it (final/, a checkpoint, metrics.json)."""
    folder.mkdir()
    safe_io.mark(folder, "run")
    shutil.copytree(workspace / "model", folder / "final")
    shutil.copytree(workspace / "model", folder / "checkpoint-1")
    (folder / "metrics.json").write_text("{}")


def test_export_never_replaces_its_input_nor_a_run(workspace, tmp_path, capsys):
    """`export --model c1/final --output c1` is refused (even with --overwrite): it would delete the run. Any
    export into a run, and `train` into an export, needs --overwrite; writing inside an input is refused too."""
    run_folder = tmp_path / "c1"
    fake_run(workspace, run_folder)
    before = sorted(p.name for p in run_folder.iterdir())
    for extra in ([], ["--overwrite"]):
        code, line = run(capsys, "export", "--model", run_folder / "final", "--output", run_folder, *extra)
        assert code == 2 and line == (f"memory-models export: error: --output '{run_folder}' holds --model "
                                      f"'{run_folder / 'final'}': writing there would destroy the input. Choose "
                                      "another folder.")
    code, line = run(capsys, "export", "--model", run_folder / "final", "--output", run_folder / "final" / "sub")
    assert code == 2 and "lies inside --model" in line
    code, line = run(capsys, "export", "--preset", "memory-transformer-tiny", "--output", run_folder)
    assert code == 2 and line.endswith(f"--output '{run_folder}' holds a training run, not a Hub-ready export; "
                                       "refusing to write into it. Choose an empty or new folder, or pass "
                                       "--overwrite to replace it.")
    assert sorted(p.name for p in run_folder.iterdir()) == before
    code, line = run(capsys, "train", *CLM, "--output-dir", workspace / "model")
    assert code == 2 and line.endswith(f"--output-dir '{workspace / 'model'}' holds a Hub-ready export, not a "
                                       "training run; refusing to write into it. Choose an empty or new folder, or "
                                       "pass --overwrite to replace it.")
    assert not (workspace / "model" / "run.json").exists()


@pytest.mark.parametrize("command", [["reproduce", "fig4d", "--scale", "tiny", "--seeds", "1"],
                                     ["demo", "--quick"], ["launcher-check"]])
def test_experiments_never_write_into_a_users_folder_or_the_current_one(command, tmp_path, capsys, monkeypatch):
    """`reproduce`, `demo` and `launcher-check` fill one folder over runs: a user's non-empty folder, the current
    folder and a folder of another kind are refused before anything is written or trained; the files stay as
    they were."""
    name = command[0]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "reproduce.md").write_text("my notes")
    (mine / "demo.json").write_text("{}")
    code, line = run(capsys, *command, "--output-dir", mine)
    assert code == 2 and line == (f"memory-models {name}: error: --output-dir '{mine}' is a non-empty folder that "
                                  "memory-models did not create (no .memory-models marker); refusing to write into "
                                  "it. Choose an empty or new folder.")
    assert sorted(p.name for p in mine.iterdir()) == ["demo.json", "reproduce.md"]
    assert (mine / "reproduce.md").read_text() == "my notes"
    monkeypatch.chdir(mine)
    code, line = run(capsys, *command, "--output-dir", ".")
    assert code == 2 and line.endswith("--output-dir '.' is not a valid output folder: it is the current folder.")
    other = tmp_path / "a-run"
    other.mkdir()
    safe_io.mark(other, "run")
    code, line = run(capsys, *command, "--output-dir", other)
    assert code == 2 and "holds a training run, not " in line
    assert sorted(p.name for p in mine.iterdir()) == ["demo.json", "reproduce.md"]
    assert sorted(p.name for p in other.iterdir()) == [".memory-models"]


def test_a_folder_an_earlier_version_wrote_is_claimed_by_what_it_holds(tmp_path):
    """An unmarked folder whose model folders are all ours (a reproduction from before the marker) is accepted and
    marked, so that a rerun resumes in it; one that also holds a folder of the user's is not."""
    from memory_models.eval.experiments.reproduce import _earlier_reproduction as earlier

    resumed = tmp_path / "resumed"
    (resumed / "models" / "a-seed0").mkdir(parents=True)
    safe_io.mark(resumed / "models" / "a-seed0", "export")
    (resumed / "models" / ".b-seed0.lock").write_text("123\n")  # what a killed run leaves: a lock, a staging folder
    (resumed / "models" / ".b-seed0.staging-0123abcd").mkdir()
    assert safe_io.claim_folder(resumed, kind="reproduce", earlier=earlier) == resumed
    assert safe_io.folder_kind(resumed) == "reproduce"
    mixed = tmp_path / "mixed"
    shutil.copytree(resumed / "models", mixed / "models")
    assert safe_io.claim_folder(tmp_path / "empty", kind="reproduce", earlier=earlier).is_dir()  # new: no models
    (mixed / "models" / "my-model").mkdir()
    with pytest.raises(ValueError, match="did not create"):
        safe_io.claim_folder(mixed, kind="reproduce", earlier=earlier)
    assert safe_io.folder_kind(mixed) is None
    fresh = safe_io.claim_folder(tmp_path / "new" / "folder", kind="demo")
    assert fresh.is_dir() and safe_io.folder_kind(fresh) == "demo"
    assert safe_io.claim_folder(fresh, kind="demo") == fresh  # ours of its kind: a rerun goes on in it


@pytest.mark.parametrize("command", [["retention", "--encoder", "model", "--context", "8"],
                                     ["benchmark", "memory", "--quick"],
                                     ["bank-retention", "--model", "model", "--memories", "bank"]])
def test_a_result_file_of_the_users_is_never_overwritten(command, workspace, tmp_path, capsys, monkeypatch):
    """`retention --output` and `benchmark` (its default file in the current folder too) refuse a file they did
    not write, before any work, and pictures beside a new result that were not drawn with it."""
    monkeypatch.chdir(workspace)
    name, mine = command[0], tmp_path / "mine.json"
    mine.write_text('{"my": "numbers"}')
    code, line = run(capsys, *command, "--output", mine)
    assert code == 2 and line == (f"memory-models {name}: error: --output '{mine}' exists and memory-models did not "
                                  'write it (no "created_by": "memory-models" in it): refusing to overwrite it. '
                                  "Choose a new file.")
    assert mine.read_text() == '{"my": "numbers"}'
    if name == "bank-retention":  # draws no picture
        return
    (tmp_path / "new.png").write_bytes(b"my picture")
    code, line = run(capsys, *command, "--output", tmp_path / "new.json")
    assert code == 2 and "would replace" in line and "new.png" in line
    assert (tmp_path / "new.png").read_bytes() == b"my picture" and not (tmp_path / "new.json").exists()


def test_a_result_of_ours_is_replaced_with_its_pictures(tmp_path):
    """A JSON result that carries memory-models' `created_by` (and the pictures beside it) may be written again;
    anything else at the path (another JSON, a folder, text) may not."""
    ours = tmp_path / "retention.json"
    ours.write_text(json.dumps({**safe_io.CREATED_BY, "results": []}))
    (tmp_path / "retention.png").write_bytes(b"drawn with it")
    assert safe_io.check_result_file(ours) == ours
    for content in ('{"created_by": "someone"}', "[1, 2]", "not json"):
        ours.write_text(content)
        with pytest.raises(ValueError, match="did not write it"):
            safe_io.check_result_file(ours)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ValueError, match="did not write it"):
        safe_io.check_result_file(tmp_path / "folder.json")
    assert safe_io.check_result_file(tmp_path / "fresh.json") == tmp_path / "fresh.json"
    # beside a new result: a picture memory-models drew (its metadata says so) may be redrawn, another may not
    (tmp_path / "drawn.png").write_bytes(b"\x89PNG\r\n\x1a\ntEXtSoftware\x00" + safe_io.DRAWN_BY.encode() + b" 0.1.0")
    assert safe_io.check_result_file(tmp_path / "drawn.json") == tmp_path / "drawn.json"
    (tmp_path / "drawn.svg").write_text("<svg>drawn by someone else</svg>")
    with pytest.raises(ValueError, match=r"drawn\.svg.*did not draw"):
        safe_io.check_result_file(tmp_path / "drawn.json")


def test_every_writer_has_overwrite_and_every_loader_asks_consent():
    """Commands that can replace a folder take --overwrite (their messages name it); every command that loads a
    model or tokenizer takes --trust-remote-code."""
    def options(name):
        return {flag for action in COMMANDS[name].parser()._actions for flag in action.option_strings}

    for name in ("export", "convert", "train", "encode", "eval", "lookalike", "tokenizer"):
        assert "--overwrite" in options(name), name
    for name in ("export", "convert", "train", "encode", "generate", "bank-retention", "retention", "eval"):
        assert "--trust-remote-code" in options(name), name


# --------------------------------------------------------------------------------------------- finite or refused
def test_nonfinite_weights_are_refused_by_name(workspace, tmp_path, capsys):
    """NaN in the lm_head (generate) or the encoder (encode) is refused naming the tensor and its file; no bank is
    written. Non-finite memories never reach a bank's manifest. With finite weights whose logits overflow, generate
    refuses instead of printing an empty answer."""
    def poison(key):
        def edit(tensors):
            tensors[key] = tensors[key].clone()
            tensors[key].view(-1)[0] = float("nan")
        return edit

    head = copy_model(workspace, tmp_path / "head", poison("decoder.lm_head.weight"))
    code, line = run(capsys, "generate", "--model", head, "--prompt", "w5 w6")
    assert code == 2 and line == (f"memory-models generate: error: --model '{head}' holds NaN or inf in the tensors "
                                  "['decoder.lm_head.weight (model.safetensors)'].")
    encoder = copy_model(workspace, tmp_path / "encoder", poison("encoder.embed_tokens.weight"))
    code, line = run(capsys, "encode", "--model", encoder, "--dataset", workspace / "corpus.jsonl",
                     "--output", tmp_path / "bank")
    assert code == 2 and "['encoder.embed_tokens.weight (model.safetensors)']" in line
    assert not (tmp_path / "bank").exists()

    def overflow(tensors):
        tensors["decoder.model.norm.weight"] = torch.full_like(tensors["decoder.model.norm.weight"], 1e30)
        tensors["decoder.lm_head.weight"] = torch.full_like(tensors["decoder.lm_head.weight"], 1e30)

    torch.manual_seed(0)
    model = MemoryForCausalLM(memory_config()).eval()
    with torch.no_grad():
        model.encoder.norm.weight.fill_(float("inf"))  # in Python, past the loader: the shard check catches it
    with pytest.raises(ValueError, match=r"NaN or inf memories for the documents \['a'\] \(shard 00000\); the shard "
                                         "is not recorded"):
        encode_bank(model, word_tokenizer(), documents(["w5 w6 w7 w8 w9"], ["a"]), tmp_path / "nan-bank",
                    show_progress=False)
    manifest = json.loads((tmp_path / "nan-bank" / "memory_bank.json").read_text())
    assert manifest["shards"] == [] and not (tmp_path / "nan-bank" / "shards" / "00000").exists()
    loud = copy_model(workspace, tmp_path / "loud", overflow)
    code, line = run(capsys, "generate", "--model", loud, "--prompt", "w5 w6")
    assert code == 2 and line.startswith("memory-models generate: error: the model produced NaN or inf logits at "
                                         "new token 1")
    assert capsys.readouterr().out == ""


def test_truncated_file_and_missing_shard_are_named(workspace, tmp_path, capsys):
    truncated = copy_model(workspace, tmp_path / "cut")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, line = run(capsys, "generate", "--model", truncated, "--prompt", "w5")
    assert code == 2 and f"{truncated / 'model.safetensors'} is unreadable (truncated or corrupt?)" in line
    sharded = tmp_path / "sharded"
    torch.manual_seed(0)
    MemoryForCausalLM(memory_config()).save_pretrained(sharded, max_shard_size="40KB")
    word_tokenizer().save_pretrained(sharded)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    (sharded / shards[-1]).unlink()
    code, line = run(capsys, "generate", "--model", sharded, "--prompt", "w5")
    assert code == 2 and line.endswith(f"the shards ['{shards[-1]}'] listed in model.safetensors.index.json are "
                                       "missing.")


# --------------------------------------------------------------------------------------------- one writer
HOLDER = """
import sys, time
from memory_models.conversion import safe_io
locks = [safe_io.locked(path) for path in sys.argv[1:]]
for lock in locks:
    lock.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def test_one_writer_per_folder_and_a_dead_writer_blocks_nothing(workspace, tmp_path, capsys):
    """While another process writes a run, a bank or an export, train / encode / export are refused naming it and
    write nothing; once that process is killed (its lock file stays behind), each reruns normally."""
    run_dir, bank, hub = tmp_path / "run", tmp_path / "bank", tmp_path / "hub"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, run_dir, bank, hub], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        commands = {run_dir: ["train", *CLM, "--output-dir", run_dir],
                    bank: ["encode", "--model", workspace / "model", "--dataset", workspace / "corpus.jsonl",
                           "--output", bank],
                    hub: ["export", "--preset", "memory-transformer-tiny", "--output", hub]}
        for target, argv in commands.items():
            code, line = run(capsys, *argv)
            assert (code, line) == (1, f"memory-models {argv[0]}: error: {target} is in use by process {holder.pid}")
            assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    assert all(safe_io.lock_path(target).exists() for target in commands)  # stale: the holder had no time to clean
    for target, argv in commands.items():
        assert run(capsys, *argv)[0] == 0, argv[0]
        assert not safe_io.lock_path(target).exists()
    assert (run_dir / "final" / "model.safetensors").exists() and (bank / "memory_bank.json").exists()


# --------------------------------------------------------------------------------------------- interrupts, full disks
def test_interrupt_and_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C during train: one line naming the step and --resume, exit 130 (the run's lock was held until then).
    A full disk while saving a checkpoint (safetensors wraps the OSError in its own error): one line naming the
    run folder, exit 1, and no checkpoint published."""
    out = tmp_path / "interrupted"
    real_step = MemoryTrainer.training_step
    held = []

    def interrupt_at_step_2(self, *args, **kwargs):
        if self.state.global_step == 1:
            with open(safe_io.lock_path(out)) as handle, pytest.raises(BlockingIOError):
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by this run
            held.append(True)
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(MemoryTrainer, "training_step", interrupt_at_step_2)
    code, line = run(capsys, "train", *CLM, "--output-dir", out)
    assert (code, line) == (130, "memory-models train: interrupted at step 1: rerun with --resume (continues from "
                                 "checkpoint-1)")
    assert held and not safe_io.lock_path(out).exists()
    monkeypatch.setattr(MemoryTrainer, "training_step", real_step)

    def full_disk(self, *args, **kwargs):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                           '"No space left on device" })')

    monkeypatch.setattr(MemoryTrainer, "_save", full_disk)
    full = tmp_path / "full"
    code, line = run(capsys, "train", *CLM, "--output-dir", full)
    assert (code, line) == (1, f"memory-models train: error: no space left on {full}")
    assert not list(full.glob("checkpoint-*"))


WORKERS_THEN_WAIT = """
import multiprocessing, sys, time
from memory_models.eval.experiments.workers import worker_manager, worker_pool
with worker_manager() as manager, worker_pool(2) as pool:
    queue = manager.Queue()
    busy = [pool.submit(time.sleep, 600) for _ in range(2)]
    time.sleep(1)
    print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie has ended and only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_workers_end_when_their_command_is_killed():
    """`reproduce`'s seeds and `demo --jobs 2`'s control train in pool workers (and pass messages through a
    manager). Killed alone (SIGKILL: no clean-up runs), the command leaves none of them running: each watches its
    parent and exits. (Python's own pools leave them training on: checked by hand with a plain ProcessPoolExecutor.)"""
    command = subprocess.Popen([sys.executable, "-c", WORKERS_THEN_WAIT], stdout=subprocess.PIPE, text=True)
    children = [int(pid) for pid in command.stdout.readline().split()]
    try:
        assert len(children) == 3 and all(_running(pid) for pid in children)  # two workers and the manager
        command.kill()
        command.wait()
        for _ in range(300):  # each notices within moments; allow a loaded machine half a minute
            if not any(_running(pid) for pid in children):
                break
            time.sleep(0.1)
        assert [pid for pid in children if _running(pid)] == []
    finally:
        for pid in children:
            if _running(pid):
                os.kill(pid, 9)


# --------------------------------------------------------------------------------------------- foreign code
EVIL = """
from pathlib import Path
Path(__file__).with_name("ran").write_text("foreign code ran")
from transformers import PretrainedConfig


class EvilConfig(PretrainedConfig):
    model_type = "evil_model"
"""


def evil_folder(folder: Path, config: dict) -> Path:
    """A folder whose config.json maps the Auto classes to its own evil.py, which writes `ran` when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    auto_map = {name: f"evil.{name.replace('Auto', 'Evil')}" for name in ("AutoConfig", "AutoModel",
                                                                           "AutoModelForCausalLM", "AutoTokenizer")}
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    (folder / "evil.py").write_text(EVIL)
    return folder


def test_foreign_code_never_runs_without_consent(workspace, tmp_path, capsys):
    """A folder whose auto_map points at its own evil.py: every command that loads it refuses naming
    --trust-remote-code, and evil.py never runs. Our own model type with such an auto_map loads with the installed
    classes (generate works), and evil.py does not run either."""
    evil = evil_folder(tmp_path / "evil", {"model_type": "evil_model"})
    corpus = workspace / "corpus.jsonl"
    commands = [["generate", "--model", evil, "--prompt", "w5"],
                ["encode", "--model", evil, "--dataset", corpus, "--output", tmp_path / "bank"],
                ["bank-retention", "--model", evil, "--memories", tmp_path / "bank"],
                ["export", "--model", evil, "--output", tmp_path / "hub"],
                ["eval", "--model", evil, "--tasks", "mmlu", "--output-dir", tmp_path / "eval"],
                ["retention", "--encoder", evil, "--steps", "1"],
                ["train", "--init-from", evil, "--output-dir", tmp_path / "run"],
                ["convert", "--decoder", evil, "--output", tmp_path / "converted"]]
    for argv in commands:
        code, line = run(capsys, *argv)
        assert code == 2 and "pass --trust-remote-code to run that code if you trust it" in line, (argv[0], line)
        assert not (evil / "ran").exists(), argv[0]
    ours = copy_model(workspace, tmp_path, edit_config=lambda text: text)
    config = json.loads((ours / "config.json").read_text())
    evil_folder(ours, config)
    assert run(capsys, "generate", "--model", ours, "--prompt", "w5 w6", "--max-new-tokens", "2")[0] == 0
    assert not (ours / "ran").exists()


# --------------------------------------------------------------------------------------------- modes
@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def wrong_modes(folder: Path, mask: int) -> list[str]:
    paths = [folder, *folder.rglob("*")]
    expected = {True: 0o777 & ~mask, False: 0o666 & ~mask}
    return [f"{p.relative_to(folder.parent)}: {oct(p.stat().st_mode & 0o777)}" for p in paths
            if not p.is_symlink() and p.stat().st_mode & 0o777 != expected[p.is_dir()]]


def test_written_folders_follow_the_umask(workspace, tmp_path, umask, monkeypatch):
    """A training run (checkpoint-N written by the Trainer, final/, metrics), an export, a memory bank, look-alike
    tasks, a tokenizer and evaluation results (lm-eval itself stubbed out) get exactly the modes of a plain
    mkdir / open under the umask (022: 0755 / 0644; 077: 0700 / 0600)."""
    from memory_models.eval.harness import compare
    from memory_models.eval.harness.arguments import compare_parser
    from memory_models.eval.harness.lookalike import write_lookalike_tasks
    from memory_models.training.data import tokenizer as tokenizer_command

    train.run(TrainJob.from_argv([*CLM, "--max-steps", "1", "--output-dir", str(tmp_path / "run")]))
    export_model(MemoryForCausalLM(memory_config()), tmp_path / "hub", word_tokenizer())
    torch.manual_seed(0)
    model, tokenizer = MemoryForCausalLM(memory_config()).eval(), word_tokenizer()
    encode_bank(model, tokenizer, documents(["w5 w6 w7 w8 w9", "w10 w11"], ["a", "b"]), tmp_path / "bank",
                shard_size=1, show_progress=False)
    write_lookalike_tasks(tmp_path / "lookalike", docs=1, context_chars=50)
    (tmp_path / "corpus.txt").write_text("one two three\nfour five six\n" * 20)
    assert tokenizer_command.main(["--corpus", str(tmp_path / "corpus.txt"), "--vocab-size", "300", "--output",
                                   str(tmp_path / "tokenizer")]) == 0
    monkeypatch.setattr(compare, "task_manager_for", lambda *args: SimpleNamespace(all_tasks=["task"]))
    monkeypatch.setattr(compare, "evaluate_model", lambda *args, **kwargs: {"results": {"task": {"acc,none": 0.5}}})
    compare.run(compare_parser().parse_args(["--model", str(workspace / "model"), "--tasks", "task",
                                             "--output-dir", str(tmp_path / "eval")]))
    assert (tmp_path / "run" / "checkpoint-1" / "model.safetensors").exists()
    assert (tmp_path / "eval" / "comparison.json").exists()
    for name in ("run", "hub", "bank", "lookalike", "tokenizer", "eval"):
        assert wrong_modes(tmp_path / name, umask) == [], name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no lock or staging left


# --------------------------------------------------------------------------------------------- config checks
def edited(key_path, value=None):
    """A config.json edit: set (or, with `value=None`, remove) the field at `key_path`."""
    def edit(text):
        config = json.loads(text)
        *parents, last = key_path
        node = config
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
        return json.dumps(config)
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[:-20], r"not valid JSON \(.* at line \d+, column \d+\)\.$"),
    (edited(["model_type"]), r"no model_type, so the kind of model it holds is unknown"),
    (edited(["model_type"], "memory_modle"), r"model_type 'memory_modle' is neither memory-models' \(memory_model, "
                                             r"memory_autoencoder, recurrent_memory, masked_mixer\) nor transformers'"),
    (edited(["decoder_config", "hidden_size"], -32), r"decoder_config\.hidden_size must be a positive integer, "
                                                     r"got -32$"),
    (edited(["decoder_config", "num_hidden_layers"], -2), r"decoder_config\.num_hidden_layers must be a positive "
                                                          r"integer, got -2$"),
    (edited(["chunk_size"], -4), r"MemoryConfig\.chunk_size must be a positive integer, got -4$"),
    (edited(["chunk_size"]), r"MemoryConfig: the saved config has no chunk_size \(required"),
    (edited(["decoder_config"]), r"MemoryConfig: the saved config has no decoder_config \(required"),
], ids=["invalid_json", "no_model_type", "unknown_model_type", "negative_hidden_size", "negative_layers",
        "negative_chunk_size", "missing_chunk_size", "missing_decoder_config"])
def test_config_checks_name_the_field(workspace, tmp_path, capsys, edit, message):
    folder = copy_model(workspace, tmp_path, edit_config=edit)
    code, line = run(capsys, "generate", "--model", folder, "--prompt", "w5")
    assert code == 2 and line.startswith(f"memory-models generate: error: --model: {folder / 'config.json'}: ")
    assert re.search(message, line), line


def test_a_plain_model_is_named_as_such(tmp_path, capsys):
    from transformers import LlamaConfig

    folder = tmp_path / "llama"
    folder.mkdir()
    LlamaConfig(vocab_size=99, hidden_size=32, num_attention_heads=2, num_hidden_layers=2).save_pretrained(folder)
    code, line = run(capsys, "generate", "--model", folder, "--prompt", "w5")
    assert (code, line) == (2, f"memory-models generate: error: --model '{folder}' holds a 'llama' model, not a "
                               "memory model (model_type 'memory_model')")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": -2}))
    code, line = run(capsys, "generate", "--model", folder, "--prompt", "w5")
    assert code == 2 and line.endswith("LlamaConfig.num_hidden_layers must be a positive integer, got -2")


# --------------------------------------------------------------------------------------------- generation
def test_generation_is_checked_before_any_compute(workspace, capsys, monkeypatch):
    """The bounded window (16 tokens) refuses a prompt plus --max-new-tokens beyond it before generating, naming
    --memory-window rolling; the default rolling window generates it, and equals the bounded window where that
    fits. An absurd --max-new-tokens and an empty prompt are refused up front too."""
    model = workspace / "model"
    prompt = ["--model", model, "--prompt", "w5 w6 w7"]
    real_generate = MemoryForCausalLM.generate

    def no_compute(self, *args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(MemoryForCausalLM, "generate", no_compute)
    code, line = run(capsys, "generate", *prompt, "--max-new-tokens", "20", "--memory-window", "bounded")
    assert (code, line) == (2, "memory-models generate: error: the prompt (3 tokens) plus --max-new-tokens 20 needs "
                               "22 positions, more than the bounded memory window holds (4 chunks of 4 = 16); pass "
                               "--memory-window rolling to generate past it, or fewer --max-new-tokens")
    code, line = run(capsys, "generate", *prompt, "--max-new-tokens", "100000000")
    assert code == 2 and line.endswith("more than the 32768 the rolling window allows; pass a larger --max-context, "
                                       "or fewer --max-new-tokens")
    code, line = run(capsys, "generate", "--model", model, "--prompt", "")
    assert (code, line) == (2, "memory-models generate: error: --prompt is empty (it gives no tokens): give the text "
                               "to continue")
    monkeypatch.setattr(MemoryForCausalLM, "generate", real_generate)
    outputs = {}
    for window in ("bounded", "rolling"):
        assert cli(["generate", *map(str, prompt), "--max-new-tokens", "12", "--memory-window", window]) == 0
        outputs[window] = capsys.readouterr().out
    assert outputs["bounded"] == outputs["rolling"]
    assert cli(["generate", *map(str, prompt), "--max-new-tokens", "20"]) == 0  # the default window: rolling
