"""Memory banks: a corpus encoded once into memories, kept as a verified `datasets` Arrow dataset.

    memory-models encode --model DIR --dataset NAME_OR_PATH --output BANK [--batch-size 64] [--shard-size 256]

A bank folder holds `memory_bank.json` (format, the fingerprint of what made the memories, the source, and the
SHA-256 of every shard's files) and `shards/NNNNN/` (`Dataset.save_to_disk` folders). One row per document:
`id`, `text`, `input_ids` (the document's tokens), `memories` `[n_chunks, d]` (float32, one per complete chunk)
and `tail_ids` (the tokens after the last complete chunk, which no memory holds).

Encoding is batched over chunks of many documents, shows a progress bar and is resumable: every finished shard
is written to a temporary folder, renamed into place and recorded in the manifest, so a rerun of the same
command continues where an interrupted one stopped. `load_memory_bank(BANK, model=..., tokenizer=...)`
checks the files against their recorded hashes and the fingerprint against the model (encoder weights and
config, chunk size, pooling, memory width, tokenizer), and refuses any difference with a `ValueError` that
names it. Then

    bank.memories(doc_id)                       # [1, n_chunks, d], for model.generate(..., memory_embeds=)
    bank.generation_inputs(doc_id, prompt_ids)  # input_ids (tail + prompt) and memory_embeds

answer from a document without reading its tokens again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import datasets
import numpy as np
import torch

from eval.banks.arguments import encode_parser

MANIFEST = "memory_bank.json"
BANK_FORMAT = "memory-models/memory-bank"
FORMAT_VERSION = 1
SHARDS = "shards"
# Config keys that describe where a config came from rather than what the encoder computes.
_CONFIG_NOISE = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "use_cache",
                 "output_attentions", "output_hidden_states", "return_dict", "_attn_implementation_autoset",
                 "id2label", "label2id")


# ----------------------------------------------------------------------------- fingerprint
def _sha256_tensors(named: list[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in named:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encoder_weights_sha256(model) -> str:
    """SHA-256 of every tensor that turns a chunk into a memory: encoder, bottleneck and projection."""
    named = []
    for part in ("encoder", "memory_compress", "memory_expand", "memory_projection"):
        module = getattr(model, part, None)
        if module is not None:
            named += [(f"{part}.{name}", value) for name, value in sorted(module.state_dict().items())]
    return _sha256_tensors(named)


def tokenizer_sha256(tokenizer) -> str:
    """SHA-256 of the tokenizer's model (vocabulary, merges, normalisation, added tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for key in ("truncation", "padding"):  # call-time settings, not part of the tokenization
            spec.pop(key, None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _clean_config(config) -> dict | None:
    if config is None:
        return None
    clean = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_NOISE}
    return json.loads(json.dumps(clean, sort_keys=True))  # as stored in the manifest (string keys, lists)


def fingerprint(model, tokenizer=None) -> dict:
    """What made (or may read) a bank's memories. Encoder-less models give `None` for the encoder fields."""
    config = model.config
    has_encoder = getattr(model, "encoder", None) is not None
    return {
        "encoder_weights_sha256": encoder_weights_sha256(model) if has_encoder else None,
        "encoder_config": _clean_config(config.encoder_config) if has_encoder else None,
        "chunk_size": config.chunk_size,
        "pooling": config.pooling,
        "compression": config.compression,
        "memory_width": config.decoder_config.hidden_size,
        "tokenizer_sha256": tokenizer_sha256(tokenizer) if tokenizer is not None else None,
        "dtype": str(model.get_input_embeddings().weight.dtype).replace("torch.", ""),
    }


def fingerprint_differences(bank: dict, current: dict) -> list[str]:
    """Human-readable differences between a bank's fingerprint and a model's; fields the model cannot tell
    (no encoder, no tokenizer given) are skipped. The dtype is informational (memories are stored as float32)."""
    differences = []
    for key, value in current.items():
        if key == "dtype" or value is None:
            continue
        if key == "encoder_config" and bank.get(key) != value:
            changed = sorted(k for k in set(value) | set(bank.get(key) or {}) if (bank.get(key) or {}).get(k) != value.get(k))
            differences.append(f"encoder_config differs in {changed}")
        elif bank.get(key) != value:
            differences.append(f"{key}: bank {bank.get(key)!r} != model {value!r}")
    return differences


# ----------------------------------------------------------------------------- files
def _files_sha256(folder: Path) -> str:
    """SHA-256 over the names and contents of every file under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _write_json_atomically(path: Path, content: dict) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(content, out, indent=2)
    os.replace(temporary, path)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not a memory bank: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is corrupted: {error}") from None
    if manifest.get("format") != BANK_FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                         f"expected {BANK_FORMAT!r} version {FORMAT_VERSION}")
    return manifest


# ----------------------------------------------------------------------------- the bank
class MemoryBank:
    """A loaded bank: `dataset` (one row per document), `fingerprint`, and look-ups by document id."""

    def __init__(self, folder: Path, manifest: dict, dataset: datasets.Dataset):
        self.folder = folder
        self.manifest = manifest
        self.fingerprint = manifest["fingerprint"]
        self.dataset = dataset.with_format("numpy", columns=["memories"], output_all_columns=True)
        self._rows = {doc_id: row for row, doc_id in enumerate(dataset["id"])}

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def ids(self) -> list[str]:
        return list(self._rows)

    def _row(self, doc_id) -> dict:
        if str(doc_id) not in self._rows:
            sample = list(self._rows)[:5]
            raise ValueError(f"document {doc_id!r} is not in the bank {self.folder} (ids such as {sample})")
        return self.dataset[self._rows[str(doc_id)]]

    def memories(self, doc_id, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """The document's memories `[1, n_chunks, d]`, ready for `memory_embeds=`."""
        memories = torch.from_numpy(np.asarray(self._row(doc_id)["memories"], dtype=np.float32))
        memories = memories.reshape(-1, self.fingerprint["memory_width"])[None]
        return memories.to(dtype=dtype or torch.float32, device=device)

    def document(self, doc_id) -> dict:
        """The document's row: `id`, `text`, `input_ids`, `tail_ids`, `memories`."""
        return self._row(doc_id)

    def generation_inputs(self, doc_id, prompt_ids: Sequence[int], device=None) -> dict:
        """`input_ids` = the document's tail tokens + `prompt_ids` (`[1, n]`) and its `memory_embeds`: what
        `model.generate(**inputs)` needs to continue `document + prompt` from the bank."""
        row = self._row(doc_id)
        ids = list(row["tail_ids"]) + list(prompt_ids)
        if not ids:
            raise ValueError(f"document {doc_id!r} ends on a chunk boundary and the prompt is empty: nothing to feed")
        inputs = {"input_ids": torch.tensor([ids], dtype=torch.long, device=device)}
        memories = self.memories(doc_id, device=device)
        if memories.shape[1]:
            inputs["memory_embeds"] = memories
        return inputs

    def check_compatible(self, model, tokenizer=None) -> None:
        """Raise a `ValueError` naming every difference between the bank's fingerprint and `model`'s."""
        differences = fingerprint_differences(self.fingerprint, fingerprint(model, tokenizer))
        if differences:
            raise ValueError(f"the memory bank {self.folder} was made by a different encoder or tokenizer: "
                             + "; ".join(differences))


def load_memory_bank(path, model=None, tokenizer=None, verify: bool = True) -> MemoryBank:
    """Open a bank written by `memory-models encode`.

    Args:
        path: the bank folder. model / tokenizer (*optional*): refuse the bank unless their fingerprint matches.
        verify (`bool`, defaults to `True`): check every shard's files against the hashes in the manifest.
    Raises:
        `ValueError` for a folder that is not a bank, an incomplete or corrupted bank, or a mismatch.
    """
    folder = Path(path)
    manifest = _read_manifest(folder)
    if not manifest.get("complete"):
        raise ValueError(f"the memory bank {folder} is incomplete ({len(manifest['shards'])} of "
                         f"{manifest['num_shards']} shards): rerun the same `memory-models encode` to finish it")
    parts = []
    for shard in manifest["shards"]:
        shard_folder = folder / SHARDS / shard["name"]
        if not shard_folder.is_dir():
            raise ValueError(f"the memory bank {folder} is corrupted: shard {shard['name']} is missing")
        if verify and _files_sha256(shard_folder) != shard["sha256"]:
            raise ValueError(f"the memory bank {folder} is corrupted: the files of shard {shard['name']} do not "
                             "match the SHA-256 recorded when it was written")
        parts.append(datasets.load_from_disk(str(shard_folder)))
    dataset = datasets.concatenate_datasets(parts) if parts else datasets.Dataset.from_dict({"id": []})
    if len(dataset) != manifest["num_documents"]:
        raise ValueError(f"the memory bank {folder} is corrupted: {len(dataset)} rows, manifest says "
                         f"{manifest['num_documents']}")
    bank = MemoryBank(folder, manifest, dataset)
    if model is not None:
        bank.check_compatible(model, tokenizer)
    return bank


# ----------------------------------------------------------------------------- encoding
def load_documents(name_or_path: str, split: str = "train", text_column: str = "text", id_column: str = "id",
                   num_documents: int | None = None) -> tuple[list[str], list[str]]:
    """Documents and their ids from a `save_to_disk` folder, a local file/folder, a named corpus or a Hub id.
    Ids come from `id_column` when the data has it, else the row number."""
    from training.data import corpora as data

    path = Path(name_or_path)
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
    elif path.exists():
        dataset = data._load_local(path, "all")
    elif name_or_path in ("python-docs", "records") or name_or_path in data.HUB_CORPORA:
        dataset = data.load_corpus(name_or_path, split, num_documents=num_documents)
    else:
        dataset = datasets.load_dataset(name_or_path, split=split)
    if num_documents is not None:
        dataset = dataset.take(num_documents) if isinstance(dataset, datasets.IterableDataset) else \
            dataset.select(range(min(num_documents, len(dataset))))
    rows = list(dataset)
    if rows and text_column not in rows[0]:
        raise ValueError(f"text column {text_column!r} not found; available columns: {sorted(rows[0])}")
    texts = [row[text_column] for row in rows]
    ids = [str(row[id_column]) if id_column in row else str(i) for i, row in enumerate(rows)]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"document ids must be unique; column {id_column!r} repeats {duplicates}")
    return texts, ids


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


def encode_bank(model, tokenizer, texts: Sequence[str], ids: Sequence[str], output, *, source: dict | None = None,
                batch_size: int = 64, shard_size: int = 256, show_progress: bool = True) -> Path:
    """Encode `texts` into a bank at `output` (see the module docstring); resumes a bank left unfinished by the
    same model, tokenizer and source. Refuses to touch a folder that is not such a bank."""
    if getattr(model, "encoder", None) is None:
        raise ValueError("this memory model has no encoder (encoder_config is None or no_memory=True): "
                         "it cannot make a memory bank")
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if len(texts) != len(ids):
        raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
    folder = Path(output)
    current = fingerprint(model, tokenizer)
    num_shards = -(-len(texts) // shard_size)
    source = {**(source or {}), "num_documents": len(texts), "shard_size": shard_size}
    if folder.exists() and any(folder.iterdir()):
        manifest = _read_manifest(folder)  # refuses any folder we did not create
        differences = fingerprint_differences(manifest["fingerprint"], current)
        if manifest["source"] != source:
            differences.append(f"source: bank {manifest['source']} != now {source}")
        if differences:
            raise ValueError(f"{folder} holds a memory bank made differently; not resuming: " + "; ".join(differences))
    else:
        manifest = {"format": BANK_FORMAT, "version": FORMAT_VERSION, "fingerprint": current, "source": source,
                    "num_documents": len(texts), "num_shards": num_shards, "shards": [], "complete": False}
        folder.mkdir(parents=True, exist_ok=True)
        _write_json_atomically(folder / MANIFEST, manifest)
    (folder / SHARDS).mkdir(exist_ok=True)
    done = {shard["name"] for shard in manifest["shards"]}
    width = current["memory_width"]
    from tqdm.auto import tqdm

    model.eval()
    with tqdm(total=len(texts), unit="doc", desc="encoding", disable=not show_progress) as progress:
        for index in range(num_shards):
            name = f"{index:05d}"
            lo, hi = index * shard_size, min((index + 1) * shard_size, len(texts))
            if name in done:
                progress.update(hi - lo)
                continue
            tokens = [tokenizer(text)["input_ids"] for text in texts[lo:hi]]
            memories = encode_documents(model, tokens, batch_size)
            chunk = model.config.chunk_size
            shard = datasets.Dataset.from_dict({
                "id": list(ids[lo:hi]), "text": list(texts[lo:hi]), "input_ids": tokens,
                "tail_ids": [t[len(t) // chunk * chunk :] for t in tokens],
                "memories": [m.reshape(-1, width) for m in memories],
            }, features=_features(width))
            temporary = Path(tempfile.mkdtemp(dir=folder / SHARDS, prefix=f".{name}."))
            try:
                shard.save_to_disk(str(temporary))
                sha = _files_sha256(temporary)
                os.replace(temporary, folder / SHARDS / name)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)  # our own temporary folder only
                raise
            manifest["shards"].append({"name": name, "num_documents": hi - lo, "sha256": sha})
            manifest["complete"] = len(manifest["shards"]) == num_shards
            _write_json_atomically(folder / MANIFEST, manifest)
            progress.update(hi - lo)
    if not manifest["complete"]:  # e.g. an empty corpus
        manifest["complete"] = len(manifest["shards"]) == num_shards
        _write_json_atomically(folder / MANIFEST, manifest)
    return folder


# ----------------------------------------------------------------------------- CLI
def load_model_and_tokenizer(model_dir: str, tokenizer_dir: str | None = None, dtype: str = "float32",
                             memory_window: str | None = None, max_context: int | None = None):
    """A memory model (`AutoModelForCausalLM`, remote code allowed) and its tokenizer (model folder by default);
    `memory_window` / `max_context` override the saved config's (e.g. `"rolling"` for long documents)."""
    import modeling_memory  # noqa: F401  (registers the memory model classes)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    overrides = {k: v for k, v in (("memory_window", memory_window), ("max_context", max_context)) if v is not None}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype), trust_remote_code=True,
                                                 **overrides)
    if model.config.model_type != "memory_model":
        raise ValueError(f"{model_dir} holds a {model.config.model_type!r} model; memory banks need a memory_model")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    return model.eval(), tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    args = encode_parser().parse_args(argv)
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.dtype)
    texts, ids = load_documents(args.dataset, args.split, args.text_column, args.id_column, args.num_documents)
    source = {"dataset": args.dataset, "split": args.split, "text_column": args.text_column}
    folder = encode_bank(model, tokenizer, texts, ids, args.output, source=source, batch_size=args.batch_size,
                         shard_size=args.shard_size)
    bank = load_memory_bank(folder, model, tokenizer)
    chunks = sum(len(bank.document(i)["input_ids"]) // model.config.chunk_size for i in bank.ids)
    print(f"wrote {folder}: {len(bank)} documents, {chunks} memories of width {bank.fingerprint['memory_width']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
