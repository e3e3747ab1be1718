"""Byte-level BPE tokenizer training with the paper's special-token conventions (its 8k FineWeb tokenizer).

The paper's 8k FineWeb tokenizer has `<|begin_of_text|>` = 0 and `<|end_of_text|>` = 1, with pad = eos = 1,
and uses reserved special tokens as copy delimiters. Ours keeps those ids: `<|bos|>` = 0, `<|eos|>` = 1
(also the pad and blank token), `<|unk|>` = 2, then `num_reserved_tokens` reserved tokens
`<|reserved_0|>`, ... from id 3; `<|reserved_0|>` is the copy delimiter. The tokenizer adds no special
tokens when encoding (the paper tokenises all data with `add_special_tokens=False`).

Command line (trains on the train split of a corpus, see `training.data.corpora.load_corpus`):

    memory-models tokenizer --corpus python-docs --vocab-size 8192 --output tokenizer-8k
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from memory_models.conversion import safe_io
from memory_models.training.arguments import tokenizer_parser
from memory_models.training.data.corpora import load_corpus

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
UNK_TOKEN = "<|unk|>"
RESERVED_TOKEN = "<|reserved_{}|>"
NUM_BYTES = 256
MAX_VOCAB_SIZE = 1 << 21  # 2,097,152: the trainer allocates per entry up front (1e9 would take ~70 GB and abort)
DEFAULT_CACHE_DIR = Path("~/.cache/memory-models")


def tokenizer_sha256(tokenizer) -> str:
    """SHA-256 of a tokenizer's model (vocabulary, merges, normalisation, added tokens): what a bank and a run
    record, so that the same path holding another tokenizer is told apart."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for key in ("truncation", "padding"):  # call-time settings, not part of the tokenization
            spec.pop(key, None)
    else:
        spec = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8192, *, num_reserved_tokens: int = 8
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts`.

    Special tokens get fixed ids: `<|bos|>` = 0, `<|eos|>` = 1 (also `pad_token`), `<|unk|>` = 2 and
    `<|reserved_i|>` = 3 + i. Every byte is in the initial alphabet, so any string encodes and decodes
    losslessly. Training is deterministic for a fixed input; on a small corpus the vocabulary can end up
    smaller than `vocab_size` (no more merges to learn).

    Args:
        texts (`Iterable[str]`): training documents.
        vocab_size (`int`, *optional*, defaults to 8192): target vocabulary size, special tokens included.
        num_reserved_tokens (`int`, *optional*, defaults to 8): reserved special tokens (copy delimiters etc.).

    Returns:
        `PreTrainedTokenizerFast` with bos/eos/unk/pad tokens set and the reserved tokens as extra special tokens.
    """
    if num_reserved_tokens < 1:
        raise ValueError(f"`num_reserved_tokens` must be at least 1 (the copy delimiter), got {num_reserved_tokens}.")
    reserved = [RESERVED_TOKEN.format(index) for index in range(num_reserved_tokens)]
    special_tokens = [BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, *reserved]
    if not NUM_BYTES + len(special_tokens) <= vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(
            f"`vocab_size` must be between {NUM_BYTES + len(special_tokens)} (256 bytes + {len(special_tokens)} "
            f"special tokens) and {MAX_VOCAB_SIZE:,}, got vocab_size={vocab_size}."
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,  # added first, in this order: ids 0, 1, 2, 3, ...
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=EOS_TOKEN,  # pad == eos, as in the paper's tokenizer
        extra_special_tokens=reserved,
        model_max_length=1_000_000_000,
    )


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids a model config records: `pad_token_id`, `bos_token_id`, `eos_token_id`, `blank_token_id`
    (= pad) and `copy_delimiter_token_id` (the id of `<|reserved_0|>`)."""
    delimiter = tokenizer.convert_tokens_to_ids(RESERVED_TOKEN.format(0))
    if delimiter is None or delimiter == tokenizer.unk_token_id:
        raise ValueError(f"The tokenizer has no {RESERVED_TOKEN.format(0)!r} token to use as copy delimiter.")
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "blank_token_id": tokenizer.pad_token_id,
        "copy_delimiter_token_id": delimiter,
    }


def corpus_texts(corpus: str, text_column: str, num_documents: int | None) -> Iterable[str]:
    dataset = load_corpus(corpus, "train", text_column=text_column, num_documents=num_documents)
    return (row["text"] for row in dataset)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, output_dir: str | os.PathLike) -> None:
    """`save_pretrained(output_dir)` plus `special_tokens.json` holding [`special_token_ids`]."""
    tokenizer.save_pretrained(output_dir)
    with open(Path(output_dir) / "special_tokens.json", "w", encoding="utf-8") as handle:
        json.dump(special_token_ids(tokenizer), handle, indent=2)


def load_default_tokenizer(
    vocab_size: int = 8192, cache_dir: str | os.PathLike | None = None
) -> PreTrainedTokenizerFast:
    """The package's default tokenizer: byte-level BPE trained on the `"python-docs"` train split.

    Trained once (deterministically) and cached in `<cache_dir>/tokenizer-python-docs-<vocab_size>`
    (`cache_dir` defaults to `~/.cache/memory-models`); later calls only load it. The first call takes about
    3 s at `vocab_size=8192` on 2 CPU cores (~2 s corpus extraction, ~1 s BPE training; output is
    byte-identical across runs). The folder is written by `conversion.safe_io` (staged, then renamed into place)
    under its lock: a concurrent caller waits for it and then loads it. The corpus depends on the Python
    version's standard library, so caches made by different Pythons can differ.
    """
    parent = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    folder = parent / f"tokenizer-python-docs-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        with safe_io.locked(folder, wait=True):
            if not (folder / "tokenizer.json").is_file():  # not written meanwhile by the process we waited for
                tokenizer = train_tokenizer(corpus_texts("python-docs", "text", None), vocab_size)
                safe_io.write_folder(folder, lambda staging: save_tokenizer(tokenizer, staging), kind="tokenizer",
                                     overwrite=True, option="the tokenizer cache")
    return PreTrainedTokenizerFast.from_pretrained(folder)


def main(argv: Sequence[str] | None = None) -> int:
    """`memory-models tokenizer`: train a tokenizer on a corpus and save it (with `special_tokens.json`)."""
    args = tokenizer_parser().parse_args(argv)

    start = time.perf_counter()
    safe_io.check_target(args.output, kind="tokenizer", overwrite=args.overwrite, inputs=[("--corpus", args.corpus)])
    texts = corpus_texts(args.corpus, args.text_column, args.num_documents)
    tokenizer = train_tokenizer(texts, args.vocab_size, num_reserved_tokens=args.num_reserved_tokens)
    safe_io.write_folder(args.output, lambda staging: save_tokenizer(tokenizer, staging), kind="tokenizer",
                         overwrite=args.overwrite, inputs=[("--corpus", args.corpus)])
    ids = " ".join(f"{key}={value}" for key, value in special_token_ids(tokenizer).items())
    print(
        f"Saved tokenizer to {args.output}: vocab size {len(tokenizer)}, {ids}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
