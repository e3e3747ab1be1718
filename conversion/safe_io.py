"""The one way this package writes folders and files: never into what a user owns, never half-written, one writer
at a time, with the modes the user's umask gives.

Every folder memory-models creates holds the marker file [`MARKER`], which records the folder's *kind* (see
[`KINDS`]). The rules:

* [`check_target`] refuses `.`, a parent of the current folder, the home folder and the filesystem root, an
  existing file, a folder that holds one of the command's inputs (or lies inside one), and, unless
  `overwrite=True`, an existing non-empty folder that is not ours or is ours but of another kind: `export` never
  replaces a training run, `train` never writes into an export.
* [`claim_folder`] does the same for a command that fills one folder over several runs and resumes in it
  (`reproduce`, `demo`, `launcher-check`): new, empty or ours of its kind, never `.` or a user's folder.
* [`check_result_file`]: a JSON result written at a path the user names (`retention --output`, `benchmark`,
  `readback`) replaces only a result of ours ([`CREATED_BY`]) and the pictures drawn beside it.
* [`locked`] holds an OS file lock (`flock`, released by the kernel when the process dies, so a killed writer never
  blocks a rerun) on `.<name>.lock` next to a target while a command writes it: a second writer gets
  [`FolderInUseError`] naming the process. A full disk inside it becomes one [`DiskFullError`] naming the target
  (also when a writer loses the errno, as torch's checkpoint writer does, and the filesystem has no space left).
* [`write_folder`] fills a staging folder `.<name>.staging-*` and [`replace_folder`]s it into place: the old
  folder is renamed aside (`.<name>.old-*`), the new one renamed in, the old one removed last. A kill at any
  moment leaves the old or the new complete folder at the target, or (between the two renames) the old one aside,
  which [`recover`] renames back before anything reads or writes the target again; [`recover`] also removes
  leftover staging folders and stale lock files. Only folders carrying our marker are ever removed.
* [`write_text_atomic`] / [`write_file_atomic`] write a file next to its target and rename it into place
  ([`recover_all`] removes the temporary files of a killed write).
* [`check_pictures`]: a picture drawn at a path the user names (`plot --output`) replaces only a picture of ours
  (its metadata says [`DRAWN_BY`]).
* Symbolic links: a target whose last component is a link is resolved ([`real_target`]): the folder it points to
  is checked, locked and replaced in place, and the link stays as it is (a link that cannot be followed is
  refused). Hidden names beside a target never follow a link: a lock file that is a link (or a hard link, or not a
  regular file) is refused, never written through, and recovery never renames or removes a link.
* Hidden names (`.<name>.lock`, `.<name>.staging-*`, `.<name>.old-*`) fit the filesystem's 255-byte limit: for a
  long `<name>` they carry its first bytes and a hash of the whole name ([`hidden_name`]).
* [`apply_modes`] gives everything in a written folder the modes a plain `mkdir` / `open` gets under the umask
  (0755 / 0644 under umask 022, 0700 / 0600 under 077), whatever the writing library chose.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".memory-models"
STAGING_INFIX = ".staging-"
ASIDE_INFIX = ".old-"
LOCK_SUFFIX = ".lock"
# What each kind of folder holds, for messages (a folder's kind is recorded in its marker).
KINDS = {
    "run": "a training run", "export": "a Hub-ready export", "converted": "a converted pretrained model",
    "bank": "a memory bank", "eval": "an evaluation's results", "lookalike": "look-alike lm-eval tasks",
    "tokenizer": "a tokenizer", "adapter": "a LoRA adapter", "reproduce": "a reproduction's models and results",
    "demo": "a demo's models and results", "launcher-check": "a launcher check's runs",
}
# Markers of earlier versions, recognised as ours (and their kind) where they are found.
OLDER_MARKERS = {".memory-models-eval": "eval", ".memory-models-lookalike": "lookalike", "memory_bank.json": "bank"}
TEMPORARY_FILE = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp$")
NAME_MAX = 255  # bytes in one file name (Linux, macOS)
TOKEN_HEX = 8  # random hex digits that tell staging / aside folders of one target apart
_HELD: dict[Path, list] = {}  # lock path -> [file descriptor, depth]: this process's locks (re-entrant)


class FolderInUseError(RuntimeError):
    """Another process holds the lock of an output folder."""


class DiskFullError(OSError):
    """The filesystem of an output folder ran out of space (`errno.ENOSPC`); `filename` is the folder."""

    def __init__(self, folder):
        super().__init__(errno.ENOSPC, f"no space left on {folder}", str(folder))

    def __str__(self) -> str:
        return self.strerror


# ----------------------------------------------------------------------------------------------- kinds
def mark(folder, kind: str) -> None:
    """Write our marker into `folder`, recording its `kind` (a key of [`KINDS`])."""
    (Path(folder) / MARKER).write_text(json.dumps({"created_by": "memory-models", "kind": kind}) + "\n")


def folder_kind(folder) -> str | None:
    """The kind recorded in `folder`'s marker (`"unknown"` for an unreadable one), or `None` if it is not ours."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        try:
            return str(json.loads((folder / MARKER).read_text())["kind"])
        except (OSError, ValueError, KeyError, TypeError):
            return "unknown"
    return next((kind for name, kind in OLDER_MARKERS.items() if (folder / name).is_file()), None)


def is_ours(folder) -> bool:
    """True if `folder` is a folder that memory-models created (it holds our marker)."""
    return folder_kind(folder) is not None


def _describe(kind: str | None) -> str:
    return KINDS.get(kind, f"a memory-models folder of kind {kind!r}") if kind else "not created by memory-models"


# ----------------------------------------------------------------------------------------------- names
def real_target(path) -> Path:
    """`path`, or, if its last component is a symbolic link, the path it points to (followed to the end): the
    folder a write of `path` really reads, locks and replaces."""
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        return path.resolve(strict=False)
    except (RuntimeError, OSError) as error:  # a loop of links
        raise ValueError(f"{str(path)!r} is a symbolic link that cannot be followed ({error}).") from None


def _shown(path, real: Path) -> str:
    """How messages name a target: as given, plus where a link points."""
    return f"{str(path)!r}" + (f" (a link to {str(real)!r})" if Path(path) != real else "")


def hidden_name(target, tail: str) -> str:
    """The hidden sibling name `.<name><tail>` of `target`, shortened to fit `NAME_MAX` bytes (the first bytes of
    `<name>`, `~` and a hash of the whole name) when the name is long."""
    name = Path(target).name
    full = f".{name}{tail}"
    if len(full.encode()) <= NAME_MAX:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    room = NAME_MAX - len(f".~{digest}{tail}".encode())
    return f".{name.encode()[:room].decode(errors='ignore')}~{digest}{tail}"


def _hidden_prefix(target: Path, infix: str) -> str:
    """The common start of the names `.<name><infix><random hex>` of `target`'s staging or aside folders."""
    return hidden_name(target, infix + "0" * TOKEN_HEX)[:-TOKEN_HEX]


# ----------------------------------------------------------------------------------------------- targets
def protected_reason(path) -> str | None:
    """Why `path` can never be an output folder (the root, the home folder, `.` or a parent of it), or `None`."""
    resolved = Path(path).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "it is the filesystem root"
    if resolved == Path.home().resolve():
        return "it is the home folder"
    if resolved == cwd:
        return "it is the current folder"
    if resolved in cwd.parents:
        return "it contains the current folder"
    return None


def check_inputs(path, inputs: Iterable[tuple[str, object]] = (), option: str = "--output") -> None:
    """Refuse an output folder that is, holds or lies inside one of the command's local inputs.

    Args:
        inputs: `(option, path)` pairs, e.g. `[("--model", "runs/c1/final")]`; `None` paths and Hub ids are skipped.
    """
    target = Path(path).expanduser().resolve()
    for name, value in inputs:
        if value is None or not Path(str(value)).expanduser().exists():
            continue
        source = Path(str(value)).expanduser().resolve()
        if source == target or target in source.parents:
            raise ValueError(f"{option} {str(path)!r} holds {name} {str(value)!r}: writing there would destroy "
                             "the input. Choose another folder.")
        if source in target.parents:
            raise ValueError(f"{option} {str(path)!r} lies inside {name} {str(value)!r}: writing there would "
                             "change the input. Choose a folder outside it.")


def check_target(path, *, kind: str, overwrite: bool = False, option: str = "--output",
                 inputs: Iterable[tuple[str, object]] = (), overwrite_option: str | None = "--overwrite") -> Path:
    """Validate an output folder of `kind` before anything is written; returns it as a `Path` (the folder a link
    points to, if `path` is a symbolic link: see [`real_target`]).

    Raises:
        ValueError: `path` is protected (see [`protected_reason`]), an existing file, overlaps an input (see
            [`check_inputs`]; `overwrite` does not lift this), or, unless `overwrite`, a non-empty folder that is
            not ours or is ours but of another kind.
    """
    given = path
    path = real_target(path)
    shown = _shown(given, path)
    reason = protected_reason(path)
    if reason:
        raise ValueError(f"{option} {shown} is not a valid output folder: {reason}.")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {shown} is an existing file, not a folder; choose another path.")
    check_inputs(path, inputs, option)
    if overwrite or not path.is_dir() or not any(path.iterdir()):
        return path
    found = folder_kind(path)
    if found is None:
        raise ValueError(f"{option} {shown} is a non-empty folder that memory-models did not create "
                         f"(no {MARKER} marker); refusing to write into it. Choose an empty or new folder"
                         + (f", or pass {overwrite_option}." if overwrite_option else "."))
    if found != kind:
        raise ValueError(f"{option} {shown} holds {_describe(found)}, not {_describe(kind)}; refusing to "
                         "write into it. Choose an empty or new folder"
                         + (f", or pass {overwrite_option} to replace it." if overwrite_option else "."))
    return path


def claim_folder(path, *, kind: str, option: str = "--output-dir",
                 earlier: Callable[[Path], bool] | None = None) -> Path:
    """The output folder of a command that fills it over one or more runs and resumes in it (`reproduce`, `demo`,
    `launcher-check`, which have no `--overwrite`): checked as [`check_target`] does without `overwrite` (so never
    `.`, the home folder, a user's non-empty folder or ours of another kind), then created and marked as ours of
    `kind`; returns it.

    Args:
        earlier: recognises an unmarked folder that an earlier version of the command wrote (before it marked its
            folder), e.g. one whose model folders are all ours; such a folder is marked and accepted.
    """
    target = real_target(path)
    if (earlier is not None and target.is_dir() and folder_kind(target) is None and protected_reason(target) is None
            and earlier(target)):
        mark(target, kind)
    target = check_target(path, kind=kind, option=option, overwrite_option=None)  # these commands replace nothing
    target.mkdir(parents=True, exist_ok=True)
    if folder_kind(target) is None:
        mark(target, kind)
    return target


def all_ours(folders: Iterable[Path]) -> bool:
    """True if there is at least one folder and every one of them is ours (for `claim_folder`'s `earlier`); hidden
    names (a killed write's lock file or staging folder) are not counted."""
    folders = [folder for folder in folders if not folder.name.startswith(".")]
    return bool(folders) and all(folder.is_dir() and is_ours(folder) for folder in folders)


CREATED_BY = {"created_by": "memory-models"}  # in every JSON result a command writes at a path the user names


def check_result_file(path, *, option: str = "--output", beside: tuple[str, ...] = (".png", ".svg")) -> Path:
    """Refuse to overwrite a result file that memory-models did not write: `path` must be new, or a JSON object
    carrying [`CREATED_BY`] (a result of ours, replaced by a rerun); the pictures drawn beside it (`path` with
    the `beside` suffixes) may be replaced together with such a result, or when they are pictures of ours
    ([`is_our_picture`]). Returns `path` as a `Path`."""
    path = Path(path)
    if path.exists():
        try:
            ours = json.loads(path.read_text(encoding="utf-8")).get("created_by") == CREATED_BY["created_by"]
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ValueError(f"{option} {str(path)!r} exists and memory-models did not write it (no "
                             f"\"created_by\": \"memory-models\" in it): refusing to overwrite it. Choose a new file.")
        return path
    taken = foreign_files([path.with_suffix(suffix) for suffix in beside])
    if taken:
        raise ValueError(f"{option} {str(path)!r}: the pictures drawn beside it would replace {taken}, which "
                         "memory-models did not draw: refusing to overwrite them. Choose another name.")
    return path


DRAWN_BY = "drawn by memory-models"  # in the metadata of every picture the package draws (PNG text, SVG creator)
PICTURE_HEAD_BYTES = 4096  # where that metadata sits in a PNG (a text chunk before the image data) and an SVG


def is_our_picture(path) -> bool:
    """True if the file at `path` carries [`DRAWN_BY`] in its metadata (a picture memory-models drew)."""
    try:
        with open(path, "rb") as file:
            return DRAWN_BY.encode() in file.read(PICTURE_HEAD_BYTES)
    except OSError:
        return False


def foreign_files(paths: Iterable) -> list[str]:
    """Those of `paths` that exist (a dangling link too) and are not pictures of ours ([`is_our_picture`])."""
    return [str(path) for path in map(Path, paths)
            if (path.exists() or path.is_symlink()) and not (path.is_file() and is_our_picture(path))]


def check_pictures(paths: Iterable, *, option: str = "--output") -> None:
    """Refuse to replace a picture that memory-models did not draw: each of `paths` must be new, or a file whose
    metadata says [`DRAWN_BY`] (a picture of ours, redrawn by a rerun)."""
    taken = foreign_files(paths)
    if taken:
        raise ValueError(f"{option}: {taken} exist and memory-models did not draw them (no {DRAWN_BY!r} in their "
                         "metadata): refusing to overwrite them. Choose another name.")


# ----------------------------------------------------------------------------------------------- locks
def lock_path(target) -> Path:
    """The lock file of `target`: `.<name>.lock` beside it (beside the folder a link points to)."""
    target = real_target(Path(target).absolute())
    return target.parent / hidden_name(target, LOCK_SUFFIX)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _open_lock(path: Path) -> int:
    """An open descriptor of the lock file `path`, created if missing; never through a link (the process id
    written into it would overwrite the file a link points to)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        descriptor = -1
    info = os.fstat(descriptor) if descriptor >= 0 else None
    if info is None or not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        if descriptor >= 0:
            os.close(descriptor)
        what = "a symbolic link" if info is None else "not a regular file" if not stat.S_ISREG(info.st_mode) \
            else "a hard link to another file"
        raise ValueError(f"the lock file {path} is {what}: memory-models never writes through it (that would "
                         "overwrite the file it points to). Remove it, then run the command again.")
    return descriptor


def _acquire(path: Path, wait: bool) -> int:
    """An open descriptor of `path` holding its exclusive `flock` (the file at `path` when it was taken)."""
    while True:
        descriptor = _open_lock(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(descriptor)
            return -1
        try:
            same = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:  # its holder removed it on release: take the new one
            same = False
        if same:
            return descriptor
        os.close(descriptor)


@contextmanager
def locked(target, *, wait: bool = False) -> Iterator[Path]:
    """Hold the lock of `target` (see the module doc) for the duration of a write; re-entrant in one process.

    Raises:
        FolderInUseError: another process holds it (with `wait=True`, wait for it instead).
        DiskFullError: the filesystem ran out of space inside the block (any `ENOSPC`, also from libraries that
            wrap it in their own error type).
    """
    target = Path(target)
    path = lock_path(target)
    held = _HELD.get(path)
    if held is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _acquire(path, wait)
        if descriptor < 0:
            raise FolderInUseError(f"{target} is in use by {_holder(path)}")
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        held = _HELD[path] = [descriptor, 0]
    held[1] += 1
    try:
        yield target
    except Exception as error:
        if not isinstance(error, DiskFullError) and (_is_disk_full(error) or _failed_write_on_full_disk(error, target)):
            raise DiskFullError(target) from error
        raise
    finally:
        held[1] -= 1
        if held[1] == 0:
            del _HELD[path]
            path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
            os.close(held[0])


def _is_disk_full(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error):  # safetensors and others wrap the OSError in their own type
            return True
        error = error.__cause__ or error.__context__
    return False


# Messages of writers that lose the errno of a failed write (torch's zip writer: "[enforce fail at
# inline_container.cc:...] . unexpected pos ..." when the disk is full).
WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")
FULL_BELOW_BYTES = 1 << 20


def _failed_write_on_full_disk(error: BaseException, target: Path) -> bool:
    """A write failure that names no errno, on a filesystem with (almost) no space left: a full disk."""
    if not any(text in str(error) for text in WRITE_FAILURES):
        return False
    folder = Path(target).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < FULL_BELOW_BYTES


def _remove_stale_lock(target: Path) -> None:
    """Remove the lock file of `target` if no process holds it (a killed writer's)."""
    path = lock_path(target)
    if path in _HELD or path.is_symlink() or not path.is_file():
        return  # a link is left alone (taking the lock then refuses it)
    descriptor = _acquire(path, wait=False)
    if descriptor >= 0:
        path.unlink(missing_ok=True)
        os.close(descriptor)


# ----------------------------------------------------------------------------------------------- modes
def umask() -> int:
    """The process umask, read without changing it where Linux shows it (`/proc/self/status`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_modes(folder) -> None:
    """Give `folder` and everything under it the modes of a plain `mkdir` / `open` under the umask (files copied or
    written through temporary files by other libraries otherwise keep 0600 or their source's mode)."""
    mask = umask()
    folder = Path(folder)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


# ----------------------------------------------------------------------------------------------- recovery
def _siblings(target: Path, infix: str) -> list[Path]:
    """`target`'s staging or aside folders of ours (never a link)."""
    if not target.parent.is_dir():
        return []
    prefix = _hidden_prefix(target, infix)
    return sorted(p for p in target.parent.iterdir()
                  if p.name.startswith(prefix) and not p.is_symlink() and p.is_dir() and is_ours(p))


def _new_name(target: Path, infix: str) -> Path:
    """An unused sibling path `.<name><infix><random>` of `target`."""
    while True:
        candidate = target.parent / hidden_name(target, infix + secrets.token_hex(TOKEN_HEX // 2))
        if not os.path.lexists(candidate):
            return candidate


def recover(target) -> None:
    """Finish or undo a write of `target` that was killed: an old folder renamed aside comes back if the
    target is missing (else it is removed), leftover staging folders of ours are removed, and so is a lock file
    no process holds."""
    target = real_target(target)
    for aside in _siblings(target, ASIDE_INFIX):
        if not os.path.lexists(target):
            os.replace(aside, target)
        else:
            shutil.rmtree(aside)
    for staging in _siblings(target, STAGING_INFIX):
        shutil.rmtree(staging)
    _remove_stale_lock(target)


def recover_all(folder) -> None:
    """[`recover`] every target of `folder` that has an aside or staging folder of ours, and remove the temporary
    files of killed [`write_text_atomic`] calls (call it while holding `folder`'s lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = set()
    for path in folder.iterdir():
        if path.is_symlink():
            continue
        if TEMPORARY_FILE.match(path.name) and path.is_file():
            path.unlink()
        for infix in (ASIDE_INFIX, STAGING_INFIX):
            if path.name.startswith(".") and infix in path.name and is_ours(path):
                names.add(path.name[1:].rsplit(infix, 1)[0])
    for name in sorted(names):
        recover(folder / name)


# ----------------------------------------------------------------------------------------------- writing
def staging_folder(target, kind: str) -> Path:
    """A new marked folder `.<name>.staging-*` next to `target` (after [`recover`] of older leftovers)."""
    target = real_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = _new_name(target, STAGING_INFIX)
    staging.mkdir()  # permissions follow the umask
    mark(staging, kind)
    return staging


def replace_folder(staging, target) -> Path:
    """Move the complete folder `staging` to `target` (the folder a link points to): old aside, new in, old removed
    last."""
    staging, given = Path(staging), Path(target)
    target = real_target(given)
    if target != given and target.parent.resolve() != staging.parent.resolve():
        raise ValueError(f"{str(given)!r} is a symbolic link to {str(target)!r}, outside the folder its replacement "
                         f"was written in ({staging.parent}); remove the link or write to {str(target)!r} itself.")
    aside = None
    if target.exists():
        if not is_ours(target):
            mark(target, "replaced")  # (overwrite=True) so that `recover` may rename it back after a kill
        aside = _new_name(target, ASIDE_INFIX)
        os.rename(target, aside)
    os.rename(staging, target)
    if aside is not None:
        shutil.rmtree(aside)
    return target


def write_folder(target, write: Callable[[Path], None], *, kind: str, overwrite: bool = False,
                 option: str = "--output", inputs: Iterable[tuple[str, object]] = ()) -> Path:
    """Check `target` ([`check_target`]), lock it, let `write(staging)` fill a staging folder, give it the umask's
    modes, then [`replace_folder`] it into place.

    A failure inside `write` removes the staging folder and leaves `target` untouched.
    """
    target = check_target(target, kind=kind, overwrite=overwrite, option=option, inputs=inputs)
    with locked(target):
        check_target(target, kind=kind, overwrite=overwrite, option=option)  # as found under the lock
        staging = staging_folder(target, kind)
        try:
            write(staging)
            apply_modes(staging)
            mark(staging, kind)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return replace_folder(staging, target)


def write_file_atomic(path, write: Callable[[Path], None]) -> Path:
    """Have `write(temporary)` write a hidden file next to `path`, then rename it into place: a failed or killed
    write leaves `path` as it was ([`recover_all`] removes a killed write's temporary file)."""
    path = Path(path)
    temporary = path.with_name(hidden_name(path, f".{os.getpid()}-{secrets.token_hex(4)}.tmp"))
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    def write(temporary: Path) -> None:
        with open(temporary, "x", encoding="utf-8") as file:  # permissions follow the umask
            file.write(text)

    return write_file_atomic(path, write)
