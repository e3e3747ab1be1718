"""The on-disk format of a memory bank, and the only code that writes one.

    BANK/
      memory_bank.json        format, fingerprint, source, shard size; once complete: every shard's row count,
                              SHA-256, and the rank and host that wrote it, and the index's SHA-256
      shards/NNNNN/           one `Dataset.save_to_disk` folder per shard: rows [N * shard_size, (N + 1) * shard_size)
      shards/NNNNN.json       the shard's record, written by the rank that encoded it right after the shard
      index/                  `save_to_disk` folder: document `id` (sorted) -> `position` (row number in the bank)

Shards are written by whichever process encodes them, so each one has its own record file instead of an entry
in a shared manifest; the manifest is written by one process only (when the bank is created, and once when it
is complete). Every folder is filled under a temporary name and renamed into place (`conversion.safe_io`), and
files and folders get the modes a plain `open` / `mkdir` gives under the user's umask.

Reading one document costs the same whatever the bank's size: the manifest, a binary search in the
memory-mapped index, and one shard (hashed, then memory-mapped).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
from pathlib import Path

import datasets

from conversion import safe_io

MANIFEST = "memory_bank.json"
BANK_FORMAT = "memory-models/memory-bank"
FORMAT_VERSION = 2
SHARDS = "shards"
INDEX = "index"
BANK_KIND = "bank"


def shard_name(index: int) -> str:
    return f"{index:05d}"


def files_sha256(folder: Path) -> str:
    """SHA-256 over the names and contents of every file under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- reading
def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is corrupted ({what}): {error}") from None


def read_manifest(folder: Path) -> dict:
    """The manifest of the bank at `folder`; a `ValueError` for a folder that is not a bank of this format."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not a memory bank: it has no {MANIFEST}")
    manifest = _read_json(path, "the bank's manifest")
    if manifest.get("format") != BANK_FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; expected {BANK_FORMAT!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{folder} is a memory bank of format version {manifest.get('version')!r}; this version "
                         f"reads version {FORMAT_VERSION}: encode the corpus again into a new folder")
    return manifest


def read_record(folder: Path, name: str) -> dict | None:
    """The record of shard `name` if the shard and its record are both on disk, else `None`."""
    path = folder / SHARDS / f"{name}.json"
    if not path.is_file() or not (folder / SHARDS / name).is_dir():
        return None
    return _read_json(path, f"the record of shard {name}")


def written_shards(folder: Path) -> int:
    """How many shards have a record (finished shards of an incomplete bank)."""
    shards = folder / SHARDS
    return sum(1 for p in shards.glob("*.json") if not p.name.startswith(".")) if shards.is_dir() else 0


def load_shard(folder: Path, shard: dict) -> datasets.Dataset:
    """Shard `shard` (a manifest entry) memory-mapped, after checking its files against the recorded SHA-256."""
    path = folder / SHARDS / shard["name"]
    if not path.is_dir():
        raise ValueError(f"the memory bank {folder} is corrupted: shard {shard['name']} is missing")
    if files_sha256(path) != shard["sha256"]:
        raise ValueError(f"the memory bank {folder} is corrupted: the files of shard {shard['name']} do not match "
                         "the SHA-256 recorded when it was written")
    return datasets.load_from_disk(str(path))


class _Keys:
    """A memory-mapped Arrow string column seen as a Python sequence (for `bisect`)."""

    def __init__(self, column):
        self.column = column

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, item: int) -> str:
        return self.column[item].as_py()


class Index:
    """Document id -> row number in the bank, by binary search in the memory-mapped, sorted `index/` column."""

    def __init__(self, folder: Path):
        path = folder / INDEX
        if not path.is_dir():
            raise ValueError(f"the memory bank {folder} is corrupted: its index folder {INDEX}/ is missing")
        self.dataset = datasets.load_from_disk(str(path))
        self.keys = _Keys(self.dataset.data.column("id"))
        self.positions = self.dataset.data.column("position")

    def __len__(self) -> int:
        return len(self.keys)

    def position(self, doc_id: str) -> int | None:
        where = bisect.bisect_left(self.keys, doc_id)
        if where < len(self.keys) and self.keys[where] == doc_id:
            return self.positions[where].as_py()
        return None

    def sample(self, count: int = 5) -> list[str]:
        return [self.keys[i] for i in range(min(count, len(self.keys)))]


# ----------------------------------------------------------------------------- writing (the only place)
@contextlib.contextmanager
def _quiet_datasets():
    """No "Saving the dataset" bar per shard (the encoder shows its own progress)."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def write_json(path: Path, content: dict) -> None:
    safe_io.write_text_atomic(path, json.dumps(content, indent=2) + "\n")


def create_bank_folder(folder: Path, manifest: dict) -> None:
    """A new bank: the folder (marked as ours), `shards/` and the manifest of an empty, incomplete bank."""
    folder.mkdir(parents=True, exist_ok=True)
    safe_io.mark(folder, BANK_KIND)
    (folder / SHARDS).mkdir(exist_ok=True)
    write_json(folder / MANIFEST, manifest)


def recover(folder: Path) -> None:
    """Remove the half-written shard and index folders a killed process left (only folders of ours)."""
    safe_io.recover_all(folder / SHARDS)
    safe_io.recover(folder / INDEX)


def _write_dataset(target: Path, dataset: datasets.Dataset) -> str:
    """`dataset.save_to_disk` into a staging folder next to `target`, renamed into place; its files' SHA-256."""
    staging = safe_io.staging_folder(target, BANK_KIND)
    try:
        with _quiet_datasets():
            dataset.save_to_disk(str(staging))
        sha = files_sha256(staging)
        safe_io.replace_folder(staging, target)
    except BaseException:
        if staging.exists():
            safe_io.recover(target)  # removes our staging folder only
        raise
    return sha


def write_shard(folder: Path, name: str, dataset: datasets.Dataset, record: dict) -> dict:
    """Write shard `name` and then its record (with the files' SHA-256); returns the record."""
    record = {**record, "name": name, "sha256": _write_dataset(folder / SHARDS / name, dataset)}
    write_json(folder / SHARDS / f"{name}.json", record)
    return record


def write_index(folder: Path, ids: list[str]) -> str:
    """The sorted id -> position index of the bank's documents (`ids` in bank order); its files' SHA-256."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    index = datasets.Dataset.from_dict({"id": [ids[i] for i in order], "position": order},
                                       features=datasets.Features({"id": datasets.Value("string"),
                                                                   "position": datasets.Value("int64")}))
    return _write_dataset(folder / INDEX, index)
