"""Fault injection for exports and loading: nothing a user owns is deleted, a replaced export is atomic (a
SIGKILL at any moment leaves the old or the new complete folder), and bad checkpoints are refused by name."""

import json
import os
import shutil
import signal
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from memory_models.configuration import build_model, get_preset
from memory_models.conversion import export_to_hub, safe_io
from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion.loading import load_model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(get_preset("memory-transformer-tiny"))


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def weights_of(model):
    """The tensor names `save_pretrained` writes (tied copies are saved once)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return set(load_file(os.path.join(folder, "model.safetensors")))


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------------- targets
def test_protected_and_foreign_targets_are_refused(tmp_path, monkeypatch, tiny_model):
    """`.`, a parent of the current folder, home and `/` are never targets; a user's non-empty folder or a file
    is refused without --overwrite, and nothing in them changes."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    for target, reason in ((".", "current folder"), ("..", "contains the current folder"),
                           (str(tmp_path), "contains the current folder"), ("/", "filesystem root"),
                           (os.path.expanduser("~"), "home folder")):
        with pytest.raises(ValueError, match=reason):
            export_model(tiny_model, target, overwrite=True)
    assert (work / "notes.txt").read_text() == "mine" and sorted(os.listdir(work)) == ["notes.txt"]

    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not create"):
        export_model(tiny_model, user)
    assert sorted(os.listdir(user)) == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="existing file"):
        export_to_hub.main(["--preset", "memory-transformer-tiny", "--output", str(tmp_path / "file")])
    assert (tmp_path / "file").read_text() == "x"
    export_model(tiny_model, user, overwrite=True)  # the user asked for it
    assert (user / "model.safetensors").exists() and not (user / "keep.txt").exists()
    assert leftovers(tmp_path) == []


def test_replacing_our_export_keeps_nothing_stale(tmp_path, tiny_model):
    """An export of ours is replaced without --overwrite; no staging or aside folders stay behind."""
    out = tmp_path / "hub"
    export_model(tiny_model, out)
    assert safe_io.is_ours(out)
    (out / "stale.bin").write_text("old")
    other = build_model(get_preset("memory-transformer-tiny"))
    export_model(other, out)
    assert not (out / "stale.bin").exists()
    assert_same_weights(weights(out), {k: v.contiguous() for k, v in other.state_dict().items()
                                       if k in weights(out)})
    assert leftovers(tmp_path) == []


def test_disk_full_during_export_leaves_the_old_folder(tmp_path, tiny_model, monkeypatch):
    """ENOSPC half-way through the save: the old export is untouched, the staging folder is removed, and the error
    names the output folder."""
    out = tmp_path / "hub"
    export_model(tiny_model, out)
    before = weights(out)
    original = type(tiny_model).save_pretrained

    def full_disk(self, folder, **kwargs):
        original(self, folder, **kwargs)
        (folder / "model.safetensors").write_bytes(b"\0" * 10)  # a partial file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tiny_model), "save_pretrained", full_disk)
    with pytest.raises(OSError, match=f"^no space left on {out}$"):
        export_model(tiny_model, out)
    assert_same_weights(weights(out), before)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------- kills
def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _run_killed(action):
    """Run `action()` in a forked child that SIGKILLs itself at a patched moment, as a real kill would: no
    cleanup handler runs. Returns once the child died of SIGKILL."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            action()
        finally:
            os._exit(3)  # not killed: the assertion below fails
    deadline = time.time() + 120
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the child did not reach the kill point")


def _kill_during_staging():  # after the model was written into the staging folder, before it is complete
    real_mark = safe_io.mark
    safe_io.mark = lambda folder, kind: _die() if (folder / "model.safetensors").exists() else real_mark(folder, kind)


def _kill_between_renames():  # the old folder is aside, the new one not yet in
    real_rename = os.rename
    os.rename = lambda src, dst: _die() if ".staging-" in str(src) else real_rename(src, dst)


def _kill_before_removing_old():  # the new folder is in, the old one still aside
    real_rmtree = shutil.rmtree
    shutil.rmtree = lambda path, *a, **k: _die() if ".old-" in str(path) else real_rmtree(path, *a, **k)


@pytest.mark.parametrize("kill, survivor", [(_kill_during_staging, None), (_kill_during_staging, "old"),
                                            (_kill_between_renames, "old"), (_kill_before_removing_old, "new")],
                         ids=["first_export_during_staging", "during_staging", "between_renames",
                              "before_removing_old"])
def test_kill_while_replacing_an_export(tmp_path, tiny_model, kill, survivor):
    """A SIGKILL at each moment of (re)placing an export leaves nothing (first export), or the old or the new
    complete folder at the target (after `recover`, which every later write runs first); leftovers are
    cleaned up, never picked up."""
    out = tmp_path / "hub"
    if survivor is not None:
        export_model(tiny_model, out)
    old = weights(out) if survivor is not None else None
    torch.manual_seed(1)
    new_model = build_model(get_preset("memory-transformer-tiny"))
    new = {k: v.contiguous() for k, v in new_model.state_dict().items() if k in weights_of(tiny_model)}

    def action():
        kill()
        export_model(new_model, out)

    _run_killed(action)
    assert leftovers(tmp_path) != []  # the kill left a staging or aside folder behind
    safe_io.recover(out)
    assert leftovers(tmp_path) == []
    if survivor is None:
        assert not out.exists()
    else:
        assert_same_weights(weights(out), old if survivor == "old" else new)
    export_model(new_model, out)  # and the next export works normally
    assert_same_weights(weights(out), new)


def test_write_text_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    """metrics.json is written through a temporary file: a failed write keeps the old content."""
    path = tmp_path / "metrics.json"
    safe_io.write_text_atomic(path, json.dumps({"a": 1}))

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safe_io.os, "fsync", fail)
    with pytest.raises(OSError):
        safe_io.write_text_atomic(path, json.dumps({"a": 2}))
    assert json.loads(path.read_text()) == {"a": 1} and sorted(os.listdir(tmp_path)) == ["metrics.json"]


# --------------------------------------------------------------------------------------------- loading
@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("saved") / "model"
    export_model(tiny_model, folder)
    return folder


def _copy_with(saved, tmp_path, edit):
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    tensors = weights(folder)
    edit(folder, tensors)
    return folder


def test_checkpoint_missing_the_encoder_is_refused(saved, tmp_path):
    """Missing tensors would be random: refused by name unless allowed; train --init-from and export too."""
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    folder = _copy_with(saved, tmp_path, lambda f, t: save_file(
        {k: v for k, v in t.items() if not k.startswith("encoder.")}, str(f / "model.safetensors"),
        metadata={"format": "pt"}))
    with pytest.raises(ValueError, match=r"missing from the checkpoint.*encoder\..*--allow-missing-weights"):
        load_model(folder)
    assert load_model(folder, allow_missing=True) is not None
    with pytest.raises(ValueError, match="--model .*missing from the checkpoint"):
        export_to_hub.main(["--model", str(folder), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    from memory_models.eval.information_retention import load_encoder

    with pytest.raises(ValueError, match=r"--encoder .*encoder tensors missing .*encoder\.layers"):
        load_encoder(str(folder))
    assert load_encoder(str(folder), allow_missing_weights=True)[0] is not None
    job = TrainJob.from_argv(["--init-from", str(folder), "--output-dir", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="--init-from .*missing from the checkpoint"):
        train.build_model(job, None)  # refused while loading, before the tokenizer is needed


def test_unexpected_nonfinite_and_truncated_weights_are_refused(saved, tmp_path):
    folder = _copy_with(saved, tmp_path, lambda f, t: save_file(
        {**t, "extra.weight": torch.zeros(2)}, str(f / "model.safetensors"), metadata={"format": "pt"}))
    with pytest.raises(ValueError, match=r"not in the model: \['extra.weight'\]"):
        load_model(folder)

    def poison(f, t):
        key = sorted(t)[0]
        t[key] = t[key].clone()
        t[key].view(-1)[0] = float("nan")
        save_file(t, str(f / "model.safetensors"), metadata={"format": "pt"})

    with pytest.raises(ValueError, match="NaN or inf"):
        load_model(_copy_with(saved, tmp_path / "nan", poison))
    truncated = _copy_with(saved, tmp_path / "cut", lambda f, t: None)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors is unreadable"):
        load_model(truncated)


def test_missing_local_folders_are_named(tmp_path, monkeypatch):
    """A local path that does not exist is a clear error, not an 'invalid Hub repo id'."""
    from memory_models.training import train
    from memory_models.training.job import TrainJob

    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match="--model .*nope.*no such folder"):
        export_to_hub.main(["--model", missing, "--output", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="--tokenizer .*no such folder"):
        train.load_tokenizer("./no-such-tokenizer")
    job = TrainJob.from_argv(["--init-from", missing, "--output-dir", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="--init-from .*no such folder"):
        train.build_model(job, None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="someone/some-model.*no such folder.*HF_HUB_OFFLINE is set"):
        load_model("someone/some-model")


# --------------------------------------------------------------------------------------------- links and names
def test_symlinked_output_is_resolved_never_half_replaced(tmp_path, tiny_model):
    """An output that is a symbolic link is the folder it points to: a user's folder is refused (nothing written into
    it, the link kept) unless --overwrite; an earlier export behind a link is replaced in place, the link kept."""
    user, link = tmp_path / "user", tmp_path / "link"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    link.symlink_to(user)
    with pytest.raises(ValueError, match=f"--output '{link}' \\(a link to '{user}'\\) is a non-empty folder that "
                                         "memory-models did not create"):
        export_model(tiny_model, link)
    assert sorted(os.listdir(user)) == ["notes.txt"] and link.is_symlink()
    export, elink = tmp_path / "export", tmp_path / "elink"
    export_model(tiny_model, export)
    elink.symlink_to(export)
    for _ in range(2):  # every later export through the link works the same way
        assert export_model(tiny_model, elink) == export
        assert elink.is_symlink() and (export / "model.safetensors").is_file() and safe_io.is_ours(export)
    export_model(tiny_model, link, overwrite=True)  # the user asked for it: the folder the link names is replaced
    assert link.is_symlink() and (user / "model.safetensors").is_file() and not (user / "notes.txt").exists()
    assert leftovers(tmp_path) == []


def test_lock_file_never_follows_a_link(tmp_path, tiny_model):
    """A lock file that is a symbolic (or hard) link to a user's file is refused: the file keeps its content."""
    secret = tmp_path / "secret.txt"
    secret.write_text("precious")
    lock = tmp_path / ".hub.lock"
    lock.symlink_to(secret)
    with pytest.raises(ValueError, match=f"the lock file {lock} is a symbolic link: memory-models never writes "
                                         "through it"):
        export_model(tiny_model, tmp_path / "hub")
    lock.unlink()
    os.link(secret, lock)
    with pytest.raises(ValueError, match="is a hard link to another file"):
        export_model(tiny_model, tmp_path / "hub")
    assert secret.read_text() == "precious" and not (tmp_path / "hub").exists()


def test_a_long_folder_name_gets_short_hidden_names(tmp_path, tiny_model):
    """A legal 245-byte folder name is exported and replaced: its lock and staging names stay within 255 bytes."""
    out = tmp_path / ("n" * 245)
    export_model(tiny_model, out)
    export_model(tiny_model, out)
    assert (out / "model.safetensors").is_file() and leftovers(tmp_path) == []
    names = [safe_io.lock_path(out).name, safe_io.hidden_name(out, ".staging-0123abcd")]
    assert all(len(name.encode()) <= 255 for name in names)
    assert safe_io.lock_path(tmp_path / ("n" * 244 + "x")).name != names[0]  # same first bytes, another lock
