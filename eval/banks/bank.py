"""Memory banks: a corpus encoded once into memories (`memory-models encode`), read one document at a time.

    memory-models verify BANK

A bank (the format: `eval.banks.store`) is sharded Arrow data: one row per document, `id`, `text`, `input_ids`
(the document's tokens), `memories` `[n_chunks, d]` (float32, one per complete chunk) and `tail_ids` (the tokens
after the last complete chunk, which no memory holds). `load_memory_bank(BANK, model=..., tokenizer=...)` opens
it without reading any shard: it checks the fingerprint against the model (encoder weights and config, chunk
size, pooling, memory width, tokenizer) and refuses any difference with a `ValueError` that names it. Then

    bank.memories(doc_id)                       # [1, n_chunks, d], for model.generate(..., memory_embeds=)
    bank.generation_inputs(doc_id, prompt_ids)  # input_ids (tail + prompt) and memory_embeds

find the document in one memory-mapped bucket of the id index and read only its shard, after checking that
shard's SHA-256: the cost of reading one document does not grow with the bank. `memory-models verify BANK`
(`verify_bank`) checks every shard and the index. Models load through `conversion.loading` (checked weights;
code shipped with a folder runs only with `trust_remote_code`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import datasets
import numpy as np
import torch

from memory_models.conversion.loading import load_config, load_model, load_tokenizer, with_memory_window
from memory_models.eval.banks import store
from memory_models.eval.banks.arguments import verify_parser
from memory_models.modeling_memory import capabilities
from memory_models.training.data.tokenizer import tokenizer_sha256

# Config keys that describe where a config came from rather than what the encoder computes.
_CONFIG_NOISE = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "use_cache",
                 "output_attentions", "output_hidden_states", "return_dict", "_attn_implementation_autoset",
                 "id2label", "label2id")


# ----------------------------------------------------------------------------- fingerprint
def sha256_tensors(named: list[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over named tensors: each one's name, dtype, shape and bytes, in the order given."""
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
    return sha256_tensors(named)


def clean_config(config) -> dict | None:
    """A config as a fingerprint reads it: JSON-ready, without the keys that only say where it came from."""
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
        "encoder_config": clean_config(config.encoder_config) if has_encoder else None,
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


# ----------------------------------------------------------------------------- the bank
class MemoryBank:
    """An open bank: `fingerprint`, `manifest`, and look-ups by document id that read only that document's shard.

    Shards are memory-mapped and checked against their SHA-256 the first time they are read (`verify=True`).
    """

    def __init__(self, folder: Path, manifest: dict, verify: bool = True):
        self.folder = folder
        self.manifest = manifest
        self.fingerprint = manifest["fingerprint"]
        self.index = store.Index(folder, manifest["index_buckets"])
        self.verify = verify
        self._shards: dict[int, datasets.Dataset] = {}

    def __len__(self) -> int:
        return self.manifest["num_documents"]

    @property
    def ids(self) -> list[str]:
        """Every document id in bank order (reads every shard's `id` column)."""
        return [doc_id for k in range(len(self.manifest["shards"])) for doc_id in self._shard(k)["id"]]

    def _shard(self, k: int) -> datasets.Dataset:
        if k not in self._shards:
            shard = self.manifest["shards"][k]
            dataset = store.load_shard(self.folder, shard) if self.verify else \
                datasets.load_from_disk(str(self.folder / store.SHARDS / shard["name"]))
            self._shards[k] = dataset.with_format("numpy", columns=["memories"], output_all_columns=True)
        return self._shards[k]

    def _row(self, doc_id) -> dict:
        doc_id = str(doc_id)
        position = self.index.position(doc_id)
        if position is None:
            raise ValueError(f"document {doc_id!r} is not in the bank {self.folder} (ids such as "
                             f"{self.index.sample(doc_id)})")
        k, row = divmod(position, self.manifest["shard_size"])
        if k >= len(self.manifest["shards"]):
            raise ValueError(f"the memory bank {self.folder} is corrupted: the index points {doc_id!r} at row "
                             f"{position}, beyond its {len(self)} documents")
        found = self._shard(k)[row]
        if found["id"] != doc_id:
            raise ValueError(f"the memory bank {self.folder} is corrupted: the index points {doc_id!r} at row "
                             f"{row} of shard {self.manifest['shards'][k]['name']}, which holds {found['id']!r}")
        return found

    def _memories(self, row: dict, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        memories = torch.from_numpy(np.asarray(row["memories"], dtype=np.float32))
        memories = memories.reshape(-1, self.fingerprint["memory_width"])[None]
        return memories.to(dtype=dtype or torch.float32, device=device)

    def memories(self, doc_id, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """The document's memories `[1, n_chunks, d]`, ready for `memory_embeds=`."""
        return self._memories(self._row(doc_id), dtype, device)

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
        memories = self._memories(row, device=device)
        if memories.shape[1]:
            inputs["memory_embeds"] = memories
        return inputs

    def check_compatible(self, model, tokenizer=None) -> None:
        """Raise a `ValueError` naming every difference between the bank's fingerprint and `model`'s."""
        differences = fingerprint_differences(self.fingerprint, fingerprint(model, tokenizer))
        if differences:
            raise ValueError(f"the memory bank {self.folder} was made by a different encoder or tokenizer: "
                             + "; ".join(differences))


def _complete_manifest(folder: Path) -> dict:
    manifest = store.read_manifest(folder)
    if not manifest.get("complete"):
        total = manifest.get("num_shards")
        written = f"{store.written_shards(folder)}" + (f" of {total}" if total is not None else "")
        raise ValueError(f"the memory bank {folder} is incomplete ({written} shards written): rerun the same "
                         "`memory-models encode` to finish it")
    return manifest


def load_memory_bank(path, model=None, tokenizer=None, verify: bool = True) -> MemoryBank:
    """Open a bank written by `memory-models encode`, reading its manifest and memory-mapping its index only.

    Args:
        path: the bank folder. model / tokenizer (*optional*): refuse the bank unless their fingerprint matches.
        verify (`bool`, defaults to `True`): check each shard's files against their SHA-256 when it is first read.
    Raises:
        `ValueError` for a folder that is not a bank, an incomplete bank, or a mismatch; reading a document
        raises it for a corrupted or missing shard, naming the shard.
    """
    folder = Path(path)
    bank = MemoryBank(folder, _complete_manifest(folder), verify=verify)
    if model is not None:
        bank.check_compatible(model, tokenizer)
    return bank


def verify_bank(path) -> dict:
    """Check a whole bank: every shard's files and row count, and the index's. Returns the counts checked.

    Raises:
        `ValueError` naming the first shard (or the index) that is missing, changed or the wrong size.
    """
    folder = Path(path)
    manifest = _complete_manifest(folder)
    total = 0
    for shard in manifest["shards"]:
        rows = len(store.load_shard(folder, shard))
        if rows != shard["num_documents"]:
            raise ValueError(f"the memory bank {folder} is corrupted: shard {shard['name']} has {rows} rows, the "
                             f"manifest says {shard['num_documents']}")
        total += rows
    index = folder / store.INDEX
    if not index.is_dir() or store.files_sha256(index) != manifest["index_sha256"]:
        raise ValueError(f"the memory bank {folder} is corrupted: the files of its index ({store.INDEX}/) are "
                         "missing or do not match the SHA-256 recorded when it was written")
    indexed = sum(store.Index(folder, manifest["index_buckets"]).bucket_sizes())
    if total != manifest["num_documents"] or indexed != total:
        raise ValueError(f"the memory bank {folder} is corrupted: {total} rows in its shards and {indexed} in its "
                         f"index, the manifest says {manifest['num_documents']}")
    size = sum(store.folder_bytes(folder / store.SHARDS / s["name"]) for s in manifest["shards"])
    return {"documents": total, "shards": len(manifest["shards"]), "bytes": size}


def load_memory_model(model_dir: str, dtype: str = "float32", memory_window: str | None = None,
                      max_context: int | None = None, trust_remote_code: bool = False):
    """A memory model in eval mode, loaded and checked by `conversion.loading` (code shipped with the folder runs
    only with `trust_remote_code`); `memory_window` / `max_context` override the saved config's (e.g. `"rolling"`
    for long documents)."""
    config = load_config(model_dir, trust_remote_code=trust_remote_code)
    if not capabilities(config).takes_memory_embeds:
        raise ValueError(f"--model {model_dir!r} holds a {config.model_type!r} model, not a memory model "
                         "(model_type 'memory_model')")
    config = with_memory_window(config, memory_window, max_context, where=f"--model {model_dir!r}")
    model = load_model(model_dir, config=config, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code,
                       allow_option=None)
    return model.eval()


def load_model_and_tokenizer(model_dir: str, tokenizer_dir: str | None = None, dtype: str = "float32",
                             memory_window: str | None = None, max_context: int | None = None,
                             trust_remote_code: bool = False):
    """A memory model (`load_memory_model`) and its tokenizer (the model folder's by default)."""
    model = load_memory_model(model_dir, dtype, memory_window, max_context, trust_remote_code)
    tokenizer = load_tokenizer(tokenizer_dir or model_dir, option="--tokenizer" if tokenizer_dir else "--model",
                               trust_remote_code=trust_remote_code)
    return model, tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    """`memory-models verify BANK`."""
    args = verify_parser().parse_args(argv)
    counts = verify_bank(args.bank)
    print(f"{args.bank}: {counts['documents']} documents in {counts['shards']} shards "
          f"({counts['bytes'] / 2**20:.1f} MiB), every SHA-256 matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
