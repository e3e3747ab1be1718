"""The on-disk format of a memory bank, and the only code that writes one.

    BANK/
      memory_bank.json        format, fingerprint, source, shard size; once complete: every shard's row count,
                              SHA-256, and the rank and host that wrote it, and the index's SHA-256
      shards/NNNNN/           one `Dataset.save_to_disk` folder per shard: rows [N * shard_size, (N + 1) * shard_size)
      shards/NNNNN.json       the shard's record, written by the rank that encoded it right after the shard
      index/NNNNN/            `save_to_disk` folders, one per hash bucket of the ids: `id` (sorted) -> `position`
                              (the document's row number in the bank)

Shards are written by whichever process encodes them, so each one has its own record file instead of an entry
in a shared manifest; the manifest is written by one process only (when the bank is created, and once when it
is complete). Every folder is filled under a temporary name and renamed into place (`conversion.safe_io`), and
files and folders get the modes a plain `open` / `mkdir` gives under the user's umask.

A manifest is checked before anything it names is read ([`check_manifest`]): shard names are shard names (digits),
so every path it leads to stays inside the bank (a shard folder that is a link out of the bank is refused too);
sizes and counts are positive (or non-negative) integers and SHA-256 digests are hex digests.

Reading one document costs the same whatever the bank's size: the manifest, a binary search in one memory-mapped
index bucket, and one shard (hashed, then memory-mapped). Building the index holds one bucket of ids in memory.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets

from memory_models.conversion import safe_io

MANIFEST = "memory_bank.json"
BANK_FORMAT = "memory-models/memory-bank"
FORMAT_VERSION = 2
SHARDS = "shards"
INDEX = "index"
BANK_KIND = "bank"
INDEX_BUCKET_SIZE = 1 << 12
MAX_INDEX_BUCKETS = 512
SHARD_NAME = re.compile(r"^[0-9]{5,}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
INDEX_FEATURES = datasets.Features({"id": datasets.Value("string"), "position": datasets.Value("int64")})


def shard_name(index: int) -> str:
    return f"{index:05d}"


def files_sha256(folder: Path) -> str:
    """SHA-256 over the names and contents of every file under `folder` (our marker aside)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != safe_io.MARKER):
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
    """The manifest of the bank at `folder`, checked ([`check_manifest`]); a `ValueError` for a folder that is not
    a bank of this format or whose manifest is not sound."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not a memory bank: it has no {MANIFEST}")
    manifest = _read_json(path, "the bank's manifest")
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is corrupted (the bank's manifest): a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != BANK_FORMAT:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; expected {BANK_FORMAT!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{folder} is a memory bank of format version {manifest.get('version')!r}; this version "
                         f"reads version {FORMAT_VERSION}: encode the corpus again into a new folder")
    check_manifest(folder, manifest)
    return manifest


def _count(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_manifest(folder: Path, manifest: dict) -> None:
    """The one rule for what a manifest may say (see the module doc); a `ValueError` names the first bad field."""
    problems = []
    fingerprint = manifest.get("fingerprint")
    width = fingerprint.get("memory_width") if isinstance(fingerprint, dict) else None
    if not _count(width, 1):
        problems.append(f"fingerprint.memory_width must be a positive integer, got {width!r}")
    if not _count(manifest.get("shard_size"), 1):
        problems.append(f"shard_size must be a positive integer, got {manifest.get('shard_size')!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        problems.append(f"shards must be a list, got {shards!r}")
        shards = []
    for position, shard in enumerate(shards):
        problems += [f"shards[{position}]: {problem}" for problem in _shard_problems(folder, shard)]
    problems += [f"{name}/ is a symbolic link, which may lead out of the bank" for name in (SHARDS, INDEX)
                 if (folder / name).is_symlink()]
    if manifest.get("complete"):
        for key, minimum in (("num_documents", 0), ("num_shards", 0), ("index_buckets", 1)):
            if not _count(manifest.get(key), minimum):
                problems.append(f"{key} must be an integer >= {minimum}, got {manifest.get(key)!r}")
        if not isinstance(manifest.get("index_sha256"), str) or not SHA256.match(manifest["index_sha256"]):
            problems.append(f"index_sha256 is not a SHA-256 hex digest: {manifest.get('index_sha256')!r}")
    if problems:
        raise ValueError(f"{folder / MANIFEST} is corrupted (the bank's manifest): " + "; ".join(problems[:3]))


def _shard_problems(folder: Path, shard) -> list[str]:
    if not isinstance(shard, dict):
        return [f"a {type(shard).__name__}, not an object"]
    problems = []
    name = shard.get("name")
    if not isinstance(name, str) or not SHARD_NAME.match(name):
        problems.append(f"name {name!r} is not a shard of this bank (shard names are digits, inside "
                        f"{folder / SHARDS})")
    elif (folder / SHARDS / name).is_symlink():
        problems.append(f"shard {name} is a symbolic link, which may lead out of the bank")
    if not _count(shard.get("num_documents"), 0):
        problems.append(f"num_documents must be an integer >= 0, got {shard.get('num_documents')!r}")
    if not isinstance(shard.get("sha256"), str) or not SHA256.match(shard["sha256"]):
        problems.append(f"sha256 is not a SHA-256 hex digest: {shard.get('sha256')!r}")
    return problems


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


def id_bucket(doc_id: str, buckets: int) -> int:
    """The index bucket of a document id (a stable hash: the same in every process and Python version)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big") % buckets


def index_buckets(num_documents: int) -> int:
    """How many buckets the index of `num_documents` ids has: `INDEX_BUCKET_SIZE` ids each, `MAX_INDEX_BUCKETS` at
    most (building the index holds one bucket in memory, and writes to every bucket at once)."""
    return max(1, min(MAX_INDEX_BUCKETS, -(-num_documents // INDEX_BUCKET_SIZE)))


class Index:
    """Document id -> row number in the bank: the id's hash bucket (`index/NNNNN/`, memory-mapped when first
    used), then a binary search in that bucket's sorted `id` column."""

    def __init__(self, folder: Path, buckets: int):
        self.folder, self.buckets = folder / INDEX, buckets
        if not self.folder.is_dir():
            raise ValueError(f"the memory bank {folder} is corrupted: its index folder {INDEX}/ is missing")
        self._loaded: dict[int, tuple[_Keys, object]] = {}

    def _bucket(self, bucket: int) -> tuple[_Keys, object]:
        if bucket not in self._loaded:
            path = self.folder / shard_name(bucket)
            if not path.is_dir():
                raise ValueError(f"the memory bank {self.folder.parent} is corrupted: index bucket {path.name} is "
                                 "missing")
            table = datasets.load_from_disk(str(path)).data
            self._loaded[bucket] = _Keys(table.column("id")), table.column("position")
        return self._loaded[bucket]

    def bucket_sizes(self) -> list[int]:
        return [len(self._bucket(b)[0]) for b in range(self.buckets)]

    def position(self, doc_id: str) -> int | None:
        keys, positions = self._bucket(id_bucket(doc_id, self.buckets))
        where = bisect.bisect_left(keys, doc_id)
        if where < len(keys) and keys[where] == doc_id:
            return positions[where].as_py()
        return None

    def sample(self, doc_id: str, count: int = 5) -> list[str]:
        """Some ids of the bucket `doc_id` would be in (for error messages)."""
        keys, _ = self._bucket(id_bucket(doc_id, self.buckets))
        return [keys[i] for i in range(min(count, len(keys)))]


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


def _write_staged(target: Path, fill: Callable[[Path], None]) -> str:
    """`fill(staging)` a staging folder next to `target`, then rename it into place; its files' SHA-256."""
    staging = safe_io.staging_folder(target, BANK_KIND)
    try:
        with _quiet_datasets():
            fill(staging)
        safe_io.apply_modes(staging)
        sha = files_sha256(staging)
        safe_io.replace_folder(staging, target)
    except BaseException:
        if staging.exists():
            safe_io.recover(target)  # removes our staging folder only
        raise
    return sha


def write_shard(folder: Path, name: str, dataset: datasets.Dataset, record: dict) -> dict:
    """Write shard `name` and then its record (with the files' SHA-256); returns the record."""
    sha = _write_staged(folder / SHARDS / name, lambda staging: dataset.save_to_disk(str(staging)))
    record = {**record, "name": name, "sha256": sha}
    write_json(folder / SHARDS / f"{name}.json", record)
    return record


def _spill_ids(scratch: Path, id_lists: Iterable[list[str]], buckets: int) -> None:
    """Append `[id, position]` lines to one file per bucket, reading the ids one shard at a time."""
    handles = [open(scratch / f"{b}.jsonl", "w") for b in range(buckets)]
    try:
        position = 0
        for ids in id_lists:
            for doc_id in ids:
                handles[id_bucket(doc_id, buckets)].write(json.dumps([doc_id, position]) + "\n")
                position += 1
    finally:
        for handle in handles:
            handle.close()


def _bucket_dataset(path: Path) -> datasets.Dataset:
    """One bucket's ids sorted, with their positions; a `ValueError` names repeated ids."""
    with open(path) as handle:
        entries = sorted(json.loads(line) for line in handle)
    repeated = sorted({a[0] for a, b in zip(entries, entries[1:]) if a[0] == b[0]})
    if repeated:
        raise ValueError(f"document ids must be unique; the corpus repeats {repeated[:5]}")
    return datasets.Dataset.from_dict({"id": [e[0] for e in entries], "position": [e[1] for e in entries]},
                                      features=INDEX_FEATURES)


def write_index(folder: Path, id_lists: Iterable[list[str]], num_documents: int) -> tuple[int, str]:
    """The id index of a bank whose shards hold `id_lists` (in bank order), built one bucket at a time (memory
    bounded by a bucket, whatever the bank's size); returns its bucket count and its files' SHA-256."""
    buckets = index_buckets(num_documents)

    def fill(staging: Path) -> None:
        scratch = staging / "ids"
        scratch.mkdir()
        _spill_ids(scratch, id_lists, buckets)
        for b in range(buckets):
            _bucket_dataset(scratch / f"{b}.jsonl").save_to_disk(str(staging / shard_name(b)))
        shutil.rmtree(scratch)

    return buckets, _write_staged(folder / INDEX, fill)
