"""Corpora and dataset preparation for the memory models (FineWeb-edu as in the paper, and offline corpora).

Named corpora (all with one `text` column):

* `"python-docs"` (default, offline): the Python language reference shipped in `pydoc_data.topics` plus the
  module, class and function docstrings of the standard library. Every Python installation has it, so it
  works on machines without network access. `split="test"` is every 20th document, `"train"` the rest.
* `"records"`: a synthetic corpus of key/value facts (`"record 17: color = teal; city = oslo; ..."`) drawn
  with `random.Random`, so that recall can be measured exactly.
* `"fineweb-edu"` / `"finemath"`: the paper's Hub corpora, streamed. Test = the first `FINEWEB_TEST_ROWS`
  (50,000) rows, train = the rest (`take` / `skip`, no shuffle), as in the reference.
* any local path (`.txt` / `.json` / `.jsonl` / `.parquet` / `.csv` file, or a folder of them), or else a
  Hub dataset id.

Every row of a corpus holds text ([`check_texts`], the one rule for rows, applied where rows come in: when a
local or Hub corpus is loaded, and to each shard `memory-models encode` reads): a string, not missing, null, a
number or a list, and at most `MAX_DOCUMENT_CHARS` characters (tokenizing one document of 10 million characters
takes about 2 GB of memory; the environment variable `MEMORY_MODELS_MAX_DOCUMENT_CHARS` raises the limit).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import random
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np

SPLITS = ("train", "test")
TOKENIZE_MODES = ("truncate", "pack")
PADDING_SIDES = ("left", "right")

PYTHON_DOCS_MIN_CHARS = 200
PYTHON_DOCS_TEST_EVERY = 20
PYTHON_DOCS_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3"})

RECORDS_DEFAULT_DOCUMENTS = 2000
RECORDS_PER_DOCUMENT = 8
RECORD_FIELDS = {
    "color": ("teal", "amber", "crimson", "indigo", "olive", "silver", "violet", "coral", "ivory", "jade"),
    "city": ("oslo", "lima", "quito", "cairo", "perth", "dakar", "hanoi", "riga", "tunis", "porto"),
    "animal": ("otter", "heron", "lynx", "gecko", "bison", "koala", "raven", "tapir", "walrus", "ibex"),
    "fruit": ("mango", "lemon", "guava", "plum", "kiwi", "papaya", "cherry", "quince", "lime", "fig"),
}

FINEWEB_TEST_ROWS = 50_000
HUB_CORPORA = {
    # name: (Hub repository, configuration); both split test = first FINEWEB_TEST_ROWS rows of "train".
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT"),
    "finemath": ("HuggingFaceTB/finemath", "finemath-4plus"),
}
LOCAL_BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
MAX_DOCUMENT_CHARS = 1_000_000
MAX_DOCUMENT_CHARS_VARIABLE = "MEMORY_MODELS_MAX_DOCUMENT_CHARS"
STREAM_JSON_BLOCK = 1 << 20


def _check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"Unknown split {split!r}; expected one of {allowed}.")


def _docstrings_of_file(path: Path) -> list[str]:
    """Module, class and function docstrings of one Python file (in `ast.walk` order); [] if it fails to parse."""
    try:
        with tokenize.open(path) as handle:  # honours the file's coding cookie
            source = handle.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old stdlib files
            tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    node_types = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, node_types))
    return [doc for doc in docstrings if doc]


def _stdlib_python_files(stdlib: Path) -> Iterator[Path]:
    """`.py` files under the standard-library folder, in sorted order, skipping tests and third-party code."""
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in PYTHON_DOCS_SKIP_DIRS and not d.startswith("__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(root) / name


@functools.lru_cache(maxsize=1)
def python_docs_documents() -> tuple[str, ...]:
    """All documents of the `"python-docs"` corpus, in a fixed order (cached: extraction takes ~5 s).

    The language-reference topics (sorted by topic name) come first, then the standard-library docstrings
    (files sorted by path). Documents shorter than `PYTHON_DOCS_MIN_CHARS` are dropped and exact duplicates
    keep only their first occurrence, so the train and test splits never share a document.
    """
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_python_files(stdlib):
        documents.extend(_docstrings_of_file(path))
    long_enough = (doc.strip() for doc in documents if len(doc.strip()) >= PYTHON_DOCS_MIN_CHARS)
    return tuple(dict.fromkeys(long_enough))


def _held_out(documents: tuple[str, ...] | list[str], split: str) -> list[str]:
    """The fixed hold-out: every `PYTHON_DOCS_TEST_EVERY`-th document is test, the rest train."""
    if split == "test":
        return list(documents[::PYTHON_DOCS_TEST_EVERY])
    return [doc for index, doc in enumerate(documents) if index % PYTHON_DOCS_TEST_EVERY != 0]


def _record(rng: random.Random, record_id: int) -> str:
    fields = [f"{key} = {rng.choice(values)}" for key, values in RECORD_FIELDS.items()]
    fields.append(f"code = {rng.randrange(1000, 10000)}")
    fields.append(f"year = {rng.randrange(1900, 2030)}")
    return f"record {record_id}: " + "; ".join(fields) + "."


def records_documents(
    num_documents: int = RECORDS_DEFAULT_DOCUMENTS, seed: int = 0, split: str = "train"
) -> list[str]:
    """Synthetic key/value documents of `RECORDS_PER_DOCUMENT` records each, fully determined by `(seed, split)`.

    The train split draws from `random.Random(seed)`, the test split from a generator seeded with a string
    derived from `seed`, so the two splits are independent draws.
    """
    _check_split(split)
    if num_documents < 1:
        raise ValueError(f"`num_documents` must be a positive integer, got {num_documents}.")
    rng = random.Random(seed if split == "train" else f"records-test-{seed}")
    documents = []
    for doc_index in range(num_documents):
        first_id = doc_index * RECORDS_PER_DOCUMENT
        records = [_record(rng, first_id + offset) for offset in range(RECORDS_PER_DOCUMENT)]
        documents.append(" ".join(records))
    return documents


# Columns kept beside the text: a question-answer corpus (`--text-column context`) gives retrieval rows.
QA_COLUMNS = ("question", "answer")


def _select_text_column(dataset: Any, text_column: str) -> Any:
    """Keep only `text_column`, renamed to `"text"`, and the `QA_COLUMNS` where the data has both (works for
    `Dataset` and `IterableDataset`)."""
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"Text column {text_column!r} not found; available columns: {columns}.")
    keep = [text_column] + (list(QA_COLUMNS) if columns is not None and set(QA_COLUMNS) <= set(columns) else [])
    if columns is not None and columns != keep:
        dataset = dataset.select_columns(keep)
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    return dataset


def _load_hub_corpus(name: str, split: str) -> datasets.IterableDataset:
    repository, configuration = HUB_CORPORA[name]
    stream = datasets.load_dataset(repository, name=configuration, split="train", streaming=True)
    return stream.take(FINEWEB_TEST_ROWS) if split == "test" else stream.skip(FINEWEB_TEST_ROWS)


TEXT_SUFFIXES = (".txt", ".json", ".jsonl", ".csv")


def check_text_files(files: list[Path]) -> None:
    """Every text data file must be non-empty, valid UTF-8: a `ValueError` names the file (and the byte offset)
    instead of the `DatasetGenerationError` that hides the cause."""
    import codecs

    for file in files:
        if file.suffix not in TEXT_SUFFIXES:
            continue
        if file.stat().st_size == 0:
            raise ValueError(f"the corpus file {str(file)!r} is empty (0 bytes).")
        decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                try:
                    decoder.decode(block)
                    offset += len(block)
                except UnicodeDecodeError as error:
                    raise ValueError(f"the corpus file {str(file)!r} is not valid UTF-8: byte "
                                     f"{offset + error.start} ({block[error.start:error.start + 1]!r}) cannot be "
                                     "decoded; convert it to UTF-8 first.") from None
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(f"the corpus file {str(file)!r} is not valid UTF-8: it ends inside a multi-byte "
                             "character.") from None


def max_document_chars() -> int:
    """The longest document a corpus may hold: `MAX_DOCUMENT_CHARS`, or the environment's
    `MEMORY_MODELS_MAX_DOCUMENT_CHARS`."""
    value = os.environ.get(MAX_DOCUMENT_CHARS_VARIABLE)
    if value is None:
        return MAX_DOCUMENT_CHARS
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_DOCUMENT_CHARS_VARIABLE} must be a positive integer, got {value!r}.")
    return int(value)


def _row_problem(text, limit: int) -> str | None:
    if text is None:
        return "no text (its text field is missing or null)"
    if not isinstance(text, str):
        kind = {"int": "number", "float": "number", "bool": "boolean", "dict": "mapping"}.get(type(text).__name__,
                                                                                            type(text).__name__)
        return f"a {kind} ({str(text)[:40]}), not text"
    if len(text) > limit:
        return (f"{len(text):,} characters, more than the {limit:,} one document may have (tokenizing it would "
                f"take about {len(text) * 180 / 2**30:.1f} GB of memory): split it into smaller documents, or raise "
                f"the limit with {MAX_DOCUMENT_CHARS_VARIABLE}")
    return None


def check_texts(texts, source: str, first_row: int = 0) -> list[str]:
    """Every row holds text (see the module doc); a `ValueError` names the first row (counting from 0) that does
    not. Returns `texts`."""
    limit = max_document_chars()
    for offset, text in enumerate(texts):
        problem = _row_problem(text, limit)
        if problem:
            raise ValueError(f"the corpus {source!r}, row {first_row + offset} (counting from 0): {problem}.")
    return texts


def check_text_column(dataset: datasets.Dataset, source: str) -> None:
    """[`check_texts`] on a map-style dataset's `"text"` column (a string column without nulls is checked in Arrow,
    without reading its rows into Python)."""
    import pyarrow.compute as pc

    column = dataset.data.column("text")
    feature = dataset.features.get("text")
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string") and \
            column.null_count == 0 and (len(column) == 0 or pc.max(pc.utf8_length(column)).as_py() <= max_document_chars()):
        return
    for start in range(0, len(dataset), 1024):
        check_texts(dataset[start : start + 1024]["text"], source, start)


def _read_text_files(files: list[str]) -> Iterator[dict]:
    for file in files:
        yield {"text": Path(file).read_text(encoding="utf-8")}


def load_local_files(path: Path, split: str, streaming: bool = False) -> datasets.Dataset | datasets.IterableDataset:
    """A local file, or a folder of files of one kind; a folder of `.txt` files gives one document per file.
    `streaming=True` (with `split="all"`) reads the rows lazily, never holding the corpus in memory."""
    if streaming and split != "all":
        raise ValueError(f"streaming a local corpus keeps every row (split 'all'), got split {split!r}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    suffixes = sorted({p.suffix for p in files if p.suffix in LOCAL_BUILDERS})
    check_text_files([p for p in files if p.suffix in suffixes])
    if path.is_dir() and ".txt" in suffixes:
        texts = [str(p) for p in files if p.suffix == ".txt"]
        if streaming:
            dataset = datasets.IterableDataset.from_generator(_read_text_files, gen_kwargs={"files": texts})
        else:
            dataset = datasets.Dataset.from_list(list(_read_text_files(texts)))
    else:
        builders = {LOCAL_BUILDERS[suffix] for suffix in suffixes}
        if len(builders) != 1:
            raise ValueError(
                f"Cannot load {str(path)!r}: expected files with one of the suffixes {sorted(LOCAL_BUILDERS)} "
                f"of a single kind, found suffixes {suffixes or [p.suffix for p in files[:5]]}."
            )
        data_files = [str(p) for p in files if p.suffix in suffixes]
        builder = builders.pop()
        # Streamed JSON is parsed in blocks of `chunksize` bytes (datasets' default 10 MB): 1 MB keeps the reader's
        # share of a streaming encoder's memory small.
        block = {"chunksize": STREAM_JSON_BLOCK} if streaming and builder == "json" else {}
        dataset = datasets.load_dataset(builder, data_files=data_files, split="train", streaming=streaming, **block)
    return _split_rows(dataset, split)


def _split_rows(dataset, split: str):
    """A local corpus's `split`: `"test"` every 20th row, `"train"` the rest, `"all"` every row."""
    if split == "all":
        return dataset
    indices = np.arange(len(dataset))
    keep = indices % PYTHON_DOCS_TEST_EVERY == 0 if split == "test" else indices % PYTHON_DOCS_TEST_EVERY != 0
    return dataset.select(indices[keep])


def _load_hub_dataset(name: str, split: str) -> datasets.Dataset:
    """`datasets.load_dataset(name)`; a failure (offline, no such dataset) is a `ValueError` listing the known names."""
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as error:  # noqa: BLE001 (offline, missing repo, bad split: all mean "not a corpus")
        known = ", ".join(repr(n) for n in known_corpora())
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"Unknown corpus {name!r}: not one of the known corpora ({known}), not an existing local file or "
            f"folder, and loading it as a Hub dataset failed ({type(error).__name__}: {first_line})."
        ) from None


def known_corpora() -> tuple[str, ...]:
    """The corpus names `load_corpus` knows without a path or Hub id."""
    return ("python-docs", "records", *HUB_CORPORA)


def load_corpus(
    name_or_path: str = "python-docs",
    split: str = "train",
    *,
    text_column: str = "text",
    num_documents: int | None = None,
    seed: int = 0,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a corpus as a dataset with a single `"text"` column.

    Args:
        name_or_path (`str`, *optional*, defaults to `"python-docs"`): `"python-docs"`, `"records"`,
            `"fineweb-edu"`, `"finemath"`, a local file or folder, or a Hub dataset id.
        split (`str`, *optional*, defaults to `"train"`): `"train"` or `"test"`. Local files have no splits of
            their own: `"test"` is every 20th row and `"train"` the rest (`"all"` keeps every row). A Hub id
            passes `split` to `datasets.load_dataset`.
        text_column (`str`, *optional*, defaults to `"text"`): the column holding the text (renamed `"text"`).
        num_documents (`int`, *optional*): keep only the first `num_documents` documents of the split; for
            `"records"` the number generated (default 2000).
        seed (`int`, *optional*, defaults to 0): seed of the `"records"` generator (ignored otherwise).

    Returns:
        `datasets.Dataset`, or a streaming `datasets.IterableDataset` for `"fineweb-edu"` / `"finemath"`.
    """
    if name_or_path == "python-docs":
        _check_split(split)
        dataset = datasets.Dataset.from_dict({"text": _held_out(python_docs_documents(), split)})
    elif name_or_path == "records":
        count = RECORDS_DEFAULT_DOCUMENTS if num_documents is None else num_documents
        return datasets.Dataset.from_dict({"text": records_documents(count, seed, split)})
    elif name_or_path in HUB_CORPORA:
        _check_split(split)
        dataset = _select_text_column(_load_hub_corpus(name_or_path, split), text_column)
        return dataset if num_documents is None else dataset.take(num_documents)
    elif Path(name_or_path).exists():
        _check_split(split, SPLITS + ("all",))
        dataset = _select_text_column(load_local_files(Path(name_or_path), "all"), text_column)
        check_text_column(dataset, name_or_path)  # before the split: row numbers are the file's
        dataset = _split_rows(dataset, split)
    else:
        dataset = _select_text_column(_load_hub_dataset(name_or_path, split), text_column)
        check_text_column(dataset, name_or_path)
    if num_documents is not None:
        dataset = dataset.select(range(min(num_documents, len(dataset))))
    return dataset


def corpus_fingerprint(name_or_path: str) -> str | None:
    """SHA-256 of the content a corpus name stands for, recorded when a run or a bank starts so that resuming onto
    another corpus at the same path is refused: a local file's bytes (a folder's: every file's relative name and
    bytes), or the `"python-docs"` documents of this Python. `None` for corpora named only (`"records"`, generated
    from the seed; Hub datasets, identified by their name)."""
    path = Path(name_or_path)
    digest = hashlib.sha256()
    if path.exists():
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if path.is_dir():
                digest.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()
    if name_or_path == "python-docs":
        for document in python_docs_documents():
            digest.update(document.encode() + b"\0")
        return digest.hexdigest()
    return None


def _pad_rows(rows: list[list[int]], max_length: int, pad_token_id: int, padding_side: str) -> dict[str, list]:
    """Truncate each row to its first `max_length` ids and pad it to exactly `max_length` on `padding_side`."""
    rows = [row[:max_length] for row in rows]
    lengths = np.array([len(row) for row in rows], dtype=np.int64)[:, None]  # (rows, 1)
    positions = np.arange(max_length)[None, :]  # (1, max_length)
    mask = positions < lengths if padding_side == "right" else positions >= max_length - lengths
    input_ids = np.full(mask.shape, pad_token_id, dtype=np.int64)  # (rows, max_length)
    if len(rows) > 0:
        input_ids[mask] = np.concatenate([np.asarray(row, dtype=np.int64) for row in rows])  # row-major fill
    return {"input_ids": input_ids.tolist(), "attention_mask": mask.astype(np.int64).tolist()}


def _pack(dataset: datasets.Dataset, tokenizer: Any, max_length: int, add_eos: bool, num_proc: int | None):
    """Concatenate all documents (eos between them when `add_eos`) and cut rows of exactly `max_length`."""
    if add_eos and tokenizer.eos_token_id is None:
        raise ValueError("`add_eos=True` needs a tokenizer with an `eos_token_id`.")
    suffix = [tokenizer.eos_token_id] if add_eos else []

    def encode(batch):
        encoded = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [ids + suffix for ids in encoded]}

    encoded = dataset.map(encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc)
    column = encoded.data.column("input_ids").combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)  # (total_tokens,)
    if add_eos and len(flat) > 0:
        flat = flat[:-1]  # the separator goes between documents, not after the last one
    num_rows = len(flat) // max_length  # drop only the final remainder
    input_ids = flat[: num_rows * max_length].reshape(num_rows, max_length)  # (rows, max_length)
    rows = {"input_ids": input_ids.tolist(), "attention_mask": np.ones_like(input_ids).tolist()}
    return datasets.Dataset.from_dict(rows)


def tokenize_corpus(
    dataset: datasets.Dataset | datasets.IterableDataset,
    tokenizer: Any,
    max_length: int,
    *,
    mode: str = "truncate",
    padding_side: str = "right",
    add_eos: bool = True,
    num_proc: int | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Tokenise a `"text"` dataset into fixed-length rows with `input_ids` and `attention_mask` columns.

    * `mode="truncate"` (paper default): each document is tokenised without special tokens, truncated to its
      first `max_length` tokens (the rest is discarded) and padded with `tokenizer.pad_token_id` on
      `padding_side`. `add_eos` is not used. Works lazily on an `IterableDataset` too.
    * `mode="pack"`: all documents are concatenated, with `tokenizer.eos_token_id` between documents when
      `add_eos`, and cut into rows of exactly `max_length` tokens; only the final remainder is dropped. The
      result is deterministic and independent of `num_proc` (unlike the reference's per-worker buffers).
      Needs a map-style `Dataset`.

    Args:
        dataset: a dataset with a `"text"` column (see [`load_corpus`]).
        tokenizer: a Hugging Face tokenizer.
        max_length (`int`): row length (the paper's `n_ctx`).
        mode (`str`, *optional*, defaults to `"truncate"`): `"truncate"` or `"pack"`.
        padding_side (`str`, *optional*, defaults to `"right"`): `"right"` or `"left"` (truncate mode).
        add_eos (`bool`, *optional*, defaults to `True`): eos separator between packed documents.
        num_proc (`int`, *optional*): worker processes for tokenisation.

    Returns:
        A dataset whose rows have `input_ids` and `attention_mask` lists of length `max_length`.
    """
    if mode not in TOKENIZE_MODES:
        raise ValueError(f"Unknown tokenisation mode {mode!r}; expected one of {TOKENIZE_MODES}.")
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"`padding_side` must be one of {PADDING_SIDES}, got {padding_side!r}.")
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}.")
    if mode == "pack":
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"mode='pack' needs a map-style `datasets.Dataset`, got {type(dataset).__name__}.")
        return _pack(dataset, tokenizer, max_length, add_eos, num_proc)
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        raise ValueError("mode='truncate' needs a tokenizer with a `pad_token_id`.")

    def encode(batch):
        encoded = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return _pad_rows(encoded, max_length, pad_token_id, padding_side)

    map_kwargs = {} if num_proc is None else {"num_proc": num_proc}
    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, **map_kwargs)


def check_training_targets(dataset, source: str, documents: int | None = None, min_tokens: int = 2) -> int:
    """Stop before training when tokenised rows give no training target: a `ValueError` names the corpus and
    the counts. A row needs `min_tokens` real tokens (2 for next-token targets). Returns the usable rows.
    Streaming datasets are not counted (that would consume them)."""
    if not isinstance(dataset, datasets.Dataset):
        return -1
    rows = len(dataset)
    usable = 0
    for batch in dataset.select_columns(["attention_mask"]).iter(batch_size=1024):
        usable += sum(sum(mask) >= min_tokens for mask in batch["attention_mask"])
    if usable == 0:
        counted = f"{documents} documents -> " if documents is not None else ""
        raise ValueError(f"the corpus {source!r} gives no training targets: {counted}{rows} rows, none with at "
                         f"least {min_tokens} tokens (empty, whitespace-only or too-short documents, or all "
                         "filtered out).")
    return usable


def count_blank_documents(dataset) -> int:
    """The documents of a map-style `"text"` dataset that are empty or whitespace-only."""
    return sum(not text.strip() for batch in dataset.iter(batch_size=1024) for text in batch["text"])


def filter_full_length(dataset: datasets.Dataset | datasets.IterableDataset):
    """Keep the rows without padding (attention mask all ones): the paper's copy-evaluation filter."""

    def is_full(batch):
        masks = batch["attention_mask"]
        if len(masks) == 0:
            return []
        if len({len(mask) for mask in masks}) > 1:  # ragged rows: no rectangular array
            return [bool(np.all(mask)) for mask in masks]
        return np.asarray(masks).reshape(len(masks), -1).all(axis=1).tolist()  # (rows, length) -> (rows,)

    return dataset.filter(is_full, batched=True)
