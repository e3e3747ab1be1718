"""Safe writing of output folders and files: never delete what a user owns, never leave a half-written state.

Every folder this package creates (an export, a run's `final/`, a run folder) holds the marker file
[`MARKER`]. The rules, used by `conversion.export_to_hub` and `training.train`:

* [`check_target`] refuses `.`, a parent of the current folder, the home folder and the filesystem root, an
  existing file, and an existing non-empty folder without our marker (unless `overwrite=True`).
* [`replace_folder`] puts a completely written staging folder at the target: the old folder is renamed
  aside (`.<name>.old-*`), the new one renamed in, and the old one removed last. A kill at any moment leaves
  the old or the new complete folder at the target, or (between the two renames) the old one aside, which
  [`recover`] renames back before anything reads or writes the target again.
* [`staging_folder`] creates `.<name>.staging-*` next to the target (marked as ours); [`recover`] removes
  the leftovers of killed writes. Only folders carrying our marker are ever removed.
* [`write_text_atomic`] writes a file next to its target and renames it into place.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

MARKER = ".memory-models"
STAGING_INFIX = ".staging-"
ASIDE_INFIX = ".old-"


def is_ours(folder) -> bool:
    """True if `folder` is a folder holding our marker file."""
    return (Path(folder) / MARKER).is_file()


def mark(folder, kind: str) -> None:
    """Write our marker into `folder` (`kind` says what wrote it: "export", "run", ...)."""
    (Path(folder) / MARKER).write_text(json.dumps({"created_by": "memory-models", "kind": kind}) + "\n")


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


def check_target(path, *, overwrite: bool = False, option: str = "--output") -> Path:
    """Validate an output folder before anything is written; returns it as a `Path`.

    Raises:
        ValueError: `path` is protected (see [`protected_reason`]), an existing file, or an existing
            non-empty folder that this package did not create (no [`MARKER`]) and `overwrite` is False.
    """
    path = Path(path)
    reason = protected_reason(path)
    if reason:
        raise ValueError(f"{option} {str(path)!r} is not a valid output folder: {reason}.")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is an existing file, not a folder; choose another path.")
    if path.is_dir() and any(path.iterdir()) and not is_ours(path) and not overwrite:
        raise ValueError(f"{option} {str(path)!r} is a non-empty folder that memory-models did not create "
                         f"(no {MARKER} marker); refusing to replace it. Choose an empty or new folder, or pass "
                         "--overwrite.")
    return path


def _siblings(target: Path, infix: str) -> list[Path]:
    if not target.parent.is_dir():
        return []
    prefix = f".{target.name}{infix}"
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.is_dir() and is_ours(p))


def _new_name(target: Path, infix: str) -> Path:
    """An unused sibling path `.<name><infix><random>` of `target`."""
    while True:
        candidate = target.parent / f".{target.name}{infix}{secrets.token_hex(4)}"
        if not candidate.exists():
            return candidate


def recover(target) -> None:
    """Finish or undo a write of `target` that was killed: an old folder renamed aside comes back if the
    target is missing (else it is removed), and leftover staging folders of ours are removed."""
    target = Path(target)
    for aside in _siblings(target, ASIDE_INFIX):
        if not target.exists():
            os.replace(aside, target)
        else:
            shutil.rmtree(aside)
    for staging in _siblings(target, STAGING_INFIX):
        shutil.rmtree(staging)


def recover_all(folder) -> None:
    """[`recover`] every target of `folder` that has an aside or staging folder of ours."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = set()
    for path in folder.iterdir():
        for infix in (ASIDE_INFIX, STAGING_INFIX):
            if path.name.startswith(".") and infix in path.name and is_ours(path):
                names.add(path.name[1:].rsplit(infix, 1)[0])
    for name in sorted(names):
        recover(folder / name)


def staging_folder(target, kind: str) -> Path:
    """A new marked folder `.<name>.staging-*` next to `target` (after [`recover`] of older leftovers)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = _new_name(target, STAGING_INFIX)
    staging.mkdir()  # permissions follow the umask (no chmod here)
    mark(staging, kind)
    return staging


def replace_folder(staging, target) -> Path:
    """Move the complete folder `staging` to `target`: old aside, new in, old removed last."""
    staging, target = Path(staging), Path(target)
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
                 option: str = "--output") -> Path:
    """Check `target`, let `write(staging)` fill a staging folder, then [`replace_folder`] it into place.

    A failure inside `write` removes the staging folder and leaves `target` untouched.
    """
    target = check_target(target, overwrite=overwrite, option=option)
    staging = staging_folder(target, kind)
    try:
        write(staging)
        mark(staging, kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return replace_folder(staging, target)


def write_text_atomic(path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as file:  # permissions follow the umask
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
