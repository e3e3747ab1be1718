"""`memory-models encode`: a corpus of any size encoded into a memory bank, by one process or many.

    memory-models encode --model DIR --dataset NAME_OR_PATH --output BANK [--batch-size 64] [--shard-size 256]
    torchrun --nproc_per_node 8 --no-python memory-models encode --model DIR --dataset ... --output BANK
    accelerate launch --multi_gpu --num_processes 8 -m memory_models.eval.banks.encode --model DIR --dataset ... \\
        --output BANK

Shard `k` holds the documents `k * shard_size .. (k + 1) * shard_size - 1` of the corpus, whatever the number of
processes, and rank `r` of `W` encodes the shards `k` with `k % W == r`, in batches of `batch_size` chunks per
encoder call. Each finished shard is written under a temporary name, renamed into place and recorded with its
SHA-256 and the rank and host that wrote it, so an interrupted run (killed, out of memory, a failing rank)
resumes shard by shard when the same command is run again, with any number of processes. Before a shard is
recorded its memories must be finite. When every rank is done, rank 0 alone checks that every shard is recorded,
builds the id index and marks the bank complete; a rank that fails makes every rank fail with its error.

Local files (`.txt` / `.json(l)` / `.parquet` / `.csv`) and Hub datasets are streamed: rows are read one shard
at a time and the corpus is never held in memory (every rank reads the stream and skips the shards of others).
A `save_to_disk` folder is memory-mapped, and each rank reads only its own shards of it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence

import datasets
import numpy as np
import torch
import torch.distributed as dist
from accelerate import PartialState

from memory_models.conversion import safe_io
from memory_models.eval.banks import store
from memory_models.eval.banks.arguments import encode_parser
from memory_models.eval.banks.bank import fingerprint, fingerprint_differences, load_model_and_tokenizer
from memory_models.training.data import corpora


# ----------------------------------------------------------------------------- corpus
def open_corpus(name_or_path: str, split: str = "train",
                num_documents: int | None = None) -> datasets.Dataset | datasets.IterableDataset:
    """The documents to encode: a `save_to_disk` folder (memory-mapped), a local file or folder (streamed), a named
    corpus (`corpora.known_corpora()`), or a Hub dataset id (streamed); the first `num_documents` rows only."""
    path = Path(name_or_path)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
    elif path.exists():
        dataset = corpora.load_local_files(path, "all", streaming=True)
    elif name_or_path in corpora.known_corpora():
        dataset = corpora.load_corpus(name_or_path, split, num_documents=num_documents)
    else:
        dataset = datasets.load_dataset(name_or_path, split=split, streaming=True)
    if num_documents is None:
        return dataset
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.take(num_documents)
    return dataset.select(range(min(num_documents, len(dataset))))


def _shards(corpus, shard_size: int) -> Iterator[tuple[int, Callable[[], dict]]]:
    """`(k, rows)` for every shard of the corpus; `rows()` gives shard `k`'s columns (a map-style dataset is only
    sliced for the shards that are read; a stream is read through)."""
    if isinstance(corpus, datasets.Dataset):
        for k in range(-(-len(corpus) // shard_size)):
            yield k, lambda k=k: corpus[k * shard_size : (k + 1) * shard_size]
    else:
        for k, batch in enumerate(corpus.iter(batch_size=shard_size)):
            yield k, lambda batch=batch: batch


# ----------------------------------------------------------------------------- processes
@dataclass
class Ranks:
    """This process's place among the processes that encode one bank (`torch.distributed` when initialised)."""

    rank: int = 0
    world: int = 1
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def current(cls) -> "Ranks":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def all_gather(self, value) -> list:
        if self.world == 1:
            return [value]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def on_main(self, fn: Callable):
        """`fn()` on rank 0, its result (or its error, raised on every rank) shared with all ranks."""
        result, error = None, None
        if self.rank == 0:
            try:
                result = fn()
            except Exception as caught:  # noqa: BLE001 (shared with the other ranks, then raised)
                error = caught
        shared = [{"result": result, "error": None if error is None else (type(error).__name__, str(error))}]
        if self.world > 1:
            dist.broadcast_object_list(shared, src=0)
        if error is not None:
            raise error
        if shared[0]["error"] is not None:
            kind, message = shared[0]["error"]
            raise ValueError(message) if kind == "ValueError" else RuntimeError(f"rank 0 failed: {kind}: {message}")
        return shared[0]["result"]


# ----------------------------------------------------------------------------- encoding
@torch.no_grad()
def encode_documents(model, token_lists: list[list[int]], batch_size: int = 64, progress=None) -> list[np.ndarray]:
    """Memories `[n_i, d]` (float32) of each document's complete chunks, `batch_size` chunks per encoder call."""
    chunk = model.config.chunk_size
    width = model.config.decoder_config.hidden_size
    device = model.get_input_embeddings().weight.device
    chunks = [ids[i * chunk : (i + 1) * chunk] for ids in token_lists for i in range(len(ids) // chunk)]
    encoded = []
    for start in range(0, len(chunks), batch_size):
        batch = torch.tensor(chunks[start : start + batch_size], dtype=torch.long, device=device)
        encoded.append(model.encode(batch).reshape(-1, width).float().cpu())  # each row is one chunk
        if progress is not None:
            progress.update(len(batch) * chunk)
    flat = torch.cat(encoded).numpy() if encoded else np.zeros((0, width), dtype=np.float32)
    counts = np.cumsum([0] + [len(ids) // chunk for ids in token_lists])
    return [flat[counts[i] : counts[i + 1]] for i in range(len(token_lists))]


def _features(width: int) -> datasets.Features:
    return datasets.Features({
        "id": datasets.Value("string"),
        "text": datasets.Value("string"),
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "tail_ids": datasets.Sequence(datasets.Value("int32")),
        "memories": datasets.Array2D(shape=(None, width), dtype="float32"),
    })


def _document_ids(rows: dict, id_column: str, first_row: int, count: int) -> list[str]:
    ids = [str(v) for v in rows[id_column]] if id_column in rows else [str(first_row + i) for i in range(count)]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"document ids must be unique; column {id_column!r} repeats {repeated}")
    return ids


def _check_finite(memories: list[np.ndarray], ids: list[str], name: str) -> None:
    bad = [doc_id for doc_id, values in zip(ids, memories) if not np.isfinite(values).all()]
    if bad:
        raise ValueError(f"the encoder gave NaN or inf memories for the documents {bad[:5]} (shard {name}); the shard "
                         "is not recorded")


def _encode_shard(model, tokenizer, rows: dict, k: int, columns: tuple[str, str], shard_size: int,
                  batch_size: int, corpus_name: str = "corpus") -> tuple[datasets.Dataset, dict]:
    """Shard `k`'s rows encoded: the `Dataset` to write and the start of its record. Every row must hold text
    (`training.data.corpora.check_texts`)."""
    text_column, id_column = columns
    if text_column not in rows:
        raise ValueError(f"text column {text_column!r} not found; available columns: {sorted(rows)}")
    texts = corpora.check_texts(list(rows[text_column]), corpus_name, k * shard_size)
    ids = _document_ids(rows, id_column, k * shard_size, len(texts))
    tokens = tokenizer(texts)["input_ids"] if texts else []
    memories = encode_documents(model, tokens, batch_size)
    _check_finite(memories, ids, store.shard_name(k))
    chunk, width = model.config.chunk_size, model.config.decoder_config.hidden_size
    shard = datasets.Dataset.from_dict({
        "id": ids, "text": texts, "input_ids": tokens, "tail_ids": [t[len(t) // chunk * chunk :] for t in tokens],
        "memories": [m.reshape(-1, width) for m in memories],
    }, features=_features(width))
    record = {"index": k, "first_row": k * shard_size, "num_documents": len(ids), "ids": ids,
              "tokens": sum(map(len, tokens)), "memories": sum(len(m) for m in memories)}
    return shard, record


def _is_done(folder: Path, name: str) -> bool:
    """Shard `name` is recorded and its files still match the recorded SHA-256 (else it is encoded again)."""
    record = store.read_record(folder, name)
    return record is not None and store.files_sha256(folder / store.SHARDS / name) == record["sha256"]


def _encode_assigned(model, tokenizer, corpus, folder: Path, ranks: Ranks, columns: tuple[str, str],
                     shard_size: int, batch_size: int, show_progress: bool, corpus_name: str = "corpus") -> dict:
    """Encode this rank's shards that are not done yet; returns what it did (and the corpus's shard count)."""
    from tqdm.auto import tqdm

    done = {"tokens": 0, "documents": 0, "shards": 0, "num_shards": 0}
    desc = "encoding" if ranks.world == 1 else f"encoding (rank 0 of {ranks.world}, its shards)"
    with tqdm(unit="shard", desc=desc, disable=not show_progress or ranks.rank != 0) as progress:
        for k, rows in _shards(corpus, shard_size):
            done["num_shards"] = k + 1
            name = store.shard_name(k)
            if k % ranks.world != ranks.rank or _is_done(folder, name):
                continue
            shard, record = _encode_shard(model, tokenizer, rows(), k, columns, shard_size, batch_size, corpus_name)
            store.write_shard(folder, name, shard, {**record, "rank": ranks.rank, "host": ranks.host})
            done["tokens"] += record["tokens"]
            done["documents"] += record["num_documents"]
            done["shards"] += 1
            progress.update(1)
    return done


def _prepare(folder: Path, current: dict, source: dict, shard_size: int, num_shards: int | None,
             lock: contextlib.ExitStack, overwrite: bool, inputs) -> dict:
    """Lock the bank folder (held until `lock` closes), then create the bank, or check that the unfinished bank
    there was started the same way (rank 0 only)."""
    safe_io.check_target(folder, kind=store.BANK_KIND, overwrite=overwrite, inputs=inputs)
    lock.enter_context(safe_io.locked(folder))
    if (folder / store.MANIFEST).is_file():
        manifest = store.read_manifest(folder)
        differences = fingerprint_differences(manifest["fingerprint"], current) + _source_differences(
            {**manifest["source"], "shard_size": manifest["shard_size"]}, {**source, "shard_size": shard_size})
        if differences:
            raise ValueError(f"{folder} holds a memory bank made differently; not resuming: " + "; ".join(differences))
        store.recover(folder)
        return manifest
    manifest = {"format": store.BANK_FORMAT, "version": store.FORMAT_VERSION, "fingerprint": current,
                "source": source, "shard_size": shard_size, "num_documents": None, "num_shards": num_shards,
                "shards": [], "complete": False}
    store.create_bank_folder(folder, manifest)
    return manifest


def _source_differences(bank: dict, now: dict) -> list[str]:
    """What differs between the corpus a bank was started on and this run's (its content: `corpus_fingerprint`)."""
    differences = []
    for key in sorted(set(bank) | set(now)):
        if bank.get(key) == now.get(key):
            continue
        if key == "corpus_sha256":
            differences.append(f"the corpus changed since the bank was started (its SHA-256 was "
                               f"{str(bank.get(key))[:12]}..., now {str(now.get(key))[:12]}...)")
        else:
            differences.append(f"source {key}: bank {bank.get(key)!r} != now {now.get(key)!r}")
    return differences


def _complete(folder: Path, manifest: dict, num_shards: int) -> dict:
    """Check that every shard is recorded, write the index and mark the bank complete (rank 0 only). Records are
    read one at a time: the memory this takes does not grow with the bank."""
    names = [store.shard_name(k) for k in range(num_shards)]
    shards = []
    for name in names:
        record = store.read_record(folder, name)
        if record is None:
            raise RuntimeError(f"the memory bank {folder} is not complete: shard {name} was not written")
        shards.append({**{key: record[key] for key in ("num_documents", "sha256", "rank", "host")}, "name": name})
    total = sum(shard["num_documents"] for shard in shards)
    buckets, sha = store.write_index(folder, (store.read_record(folder, name)["ids"] for name in names), total)
    manifest = {**manifest, "num_documents": total, "num_shards": num_shards, "shards": shards,
                "index_buckets": buckets, "index_sha256": sha, "complete": True}
    store.write_json(folder / store.MANIFEST, manifest)
    return manifest


def _raise_failures(statuses: list[dict], own_error: Exception | None, folder: Path) -> None:
    if own_error is not None:
        raise own_error
    failed = [s for s in statuses if s["error"] is not None]
    if failed:
        first = failed[0]
        raise RuntimeError(f"rank {first['rank']} (host {first['host']}) failed: {first['error']}; the memory bank "
                           f"{folder} is not complete: rerun the same command to finish it")


def _check_arguments(model, batch_size, shard_size) -> None:
    if getattr(model, "encoder", None) is None:
        raise ValueError("this memory model has no encoder (encoder_config is None or no_memory=True): "
                         "it cannot make a memory bank")
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def encode_bank(model, tokenizer, corpus: datasets.Dataset | datasets.IterableDataset, output, *,
                text_column: str = "text", id_column: str = "id", source: dict | None = None, batch_size: int = 64,
                shard_size: int = 256, show_progress: bool = True, overwrite: bool = False, inputs=()) -> dict:
    """Encode `corpus` (`text_column`; ids from `id_column`, else row numbers) into a bank at `output`.

    Called by every process of an initialised `torch.distributed` group, each encodes its share of the shards
    (see the module docstring). Resumes an unfinished bank made by the same model, tokenizer and `source`; refuses
    any other bank, a folder that holds one of `inputs` (`(option, path)` pairs), and a non-empty folder that is
    not a bank (unless `overwrite`: the bank is then written beside its files). Rank 0 holds the folder's lock
    (`conversion.safe_io.locked`) from the start to the end: a second run on the same folder is refused.

    Returns:
        `dict`: `folder`, the bank's `num_documents` and `num_shards`, and what this run encoded (all ranks):
        `documents`, `tokens`, `shards`, `seconds` (of which `complete_seconds`: rank 0 writing the index and
        marking the bank complete), `processes`.
    """
    _check_arguments(model, batch_size, shard_size)
    folder, ranks = Path(output), Ranks.current()
    current = fingerprint(model, tokenizer)
    known = isinstance(corpus, datasets.Dataset)
    source = {**(source or {}), "text_column": text_column, "id_column": id_column,
              "num_rows": len(corpus) if known else None}
    with contextlib.ExitStack() as lock:
        manifest = ranks.on_main(lambda: _prepare(folder, current, source, shard_size,
                                                  -(-len(corpus) // shard_size) if known else None, lock, overwrite,
                                                  inputs))
        return _encode_and_complete(model, tokenizer, corpus, folder, manifest, ranks, (text_column, id_column),
                                    shard_size, batch_size, show_progress)


def _encode_and_complete(model, tokenizer, corpus, folder: Path, manifest: dict, ranks: Ranks,
                         columns: tuple[str, str], shard_size: int, batch_size: int, show_progress: bool) -> dict:
    """Every rank encodes its shards; all learn of any failure; rank 0 marks the bank complete."""
    start = time.perf_counter()
    done, error = {"tokens": 0, "documents": 0, "shards": 0, "num_shards": manifest["num_shards"]}, None
    if not manifest["complete"]:
        model.eval()
        try:
            done = _encode_assigned(model, tokenizer, corpus, folder, ranks, columns, shard_size, batch_size,
                                    show_progress, str(manifest["source"].get("dataset") or "corpus"))
        except Exception as caught:  # noqa: BLE001 (every rank learns of it below, then it is raised)
            error = caught
    statuses = ranks.all_gather({**done, "rank": ranks.rank, "host": ranks.host,
                                 "error": None if error is None else f"{type(error).__name__}: {error}"})
    _raise_failures(statuses, error, folder)
    serial = 0.0
    if not manifest["complete"]:
        counts = {s["num_shards"] for s in statuses}
        if len(counts) != 1:
            raise RuntimeError(f"the ranks read different numbers of shards from the corpus ({sorted(counts)}): "
                               "the dataset must give the same rows in the same order to every process")
        serial = time.perf_counter()
        manifest = ranks.on_main(lambda: _complete(folder, manifest, counts.pop()))
        serial = time.perf_counter() - serial  # the one serial step: index and manifest, on rank 0
    return {"folder": folder, "num_documents": manifest["num_documents"], "num_shards": manifest["num_shards"],
            "documents": sum(s["documents"] for s in statuses), "tokens": sum(s["tokens"] for s in statuses),
            "shards": sum(s["shards"] for s in statuses), "seconds": time.perf_counter() - start,
            "complete_seconds": serial, "processes": ranks.world}


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    args = encode_parser().parse_args(argv)
    inputs = [("--model", args.model), ("--tokenizer", args.tokenizer), ("--dataset", args.dataset)]
    safe_io.check_target(args.output, kind=store.BANK_KIND, overwrite=args.overwrite, inputs=inputs)  # before loading
    state = PartialState(cpu=not torch.cuda.is_available())  # gloo ranks on CPU, one GPU per rank otherwise
    try:
        model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.dtype,
                                                    trust_remote_code=args.trust_remote_code)
        corpus = open_corpus(args.dataset, args.split, args.num_documents)
        source = {"dataset": args.dataset, "split": args.split, "num_documents": args.num_documents,
                  "corpus_sha256": corpora.corpus_fingerprint(args.dataset)}
        result = encode_bank(model.to(state.device), tokenizer, corpus, args.output, text_column=args.text_column,
                             id_column=args.id_column, source=source, batch_size=args.batch_size,
                             shard_size=args.shard_size, overwrite=args.overwrite, inputs=inputs)
    finally:
        if state.num_processes > 1:
            state.destroy_process_group()
    if state.is_main_process:
        rate = result["tokens"] / result["seconds"] if result["seconds"] else 0.0
        print(f"wrote {result['folder']}: {result['num_documents']} documents in {result['num_shards']} shards; "
              f"this run encoded {result['shards']} shards, {result['tokens']} tokens in {result['seconds']:.1f} s "
              f"({rate:,.0f} tokens/s; processes x threads: {result['processes']} x {torch.get_num_threads()}; "
              f"marking it complete took {result['complete_seconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
