"""A tiny saved memory model and a corpus of a few dozen short documents, for the memory-bank scale tests."""

import json
from pathlib import Path

import torch

from cases_memory import VOCAB, memory_config, word_tokenizer, words
from memory_models.modeling_memory import MemoryForCausalLM

NUM_DOCUMENTS = 24
SHARD_SIZE = 2  # 12 shards
ENCODE_OPTIONS = ["--shard-size", str(SHARD_SIZE), "--batch-size", "3"]


def rows() -> list[dict]:
    """`NUM_DOCUMENTS` documents of 1 to 20 tokens (0 to 5 memories of chunk 4), ids `doc-0` ...."""
    generator = torch.Generator().manual_seed(11)
    lengths = torch.randint(1, 21, (NUM_DOCUMENTS,), generator=generator).tolist()
    return [{"id": f"doc-{i}", "text": words(torch.randint(3, VOCAB, (n,), generator=generator).tolist())}
            for i, n in enumerate(lengths)]


def save_model_and_corpus(root: Path):
    """`root/model` (model + tokenizer) and `root/corpus.jsonl`; returns the model (rolling window) and tokenizer."""
    torch.manual_seed(0)
    model, tokenizer = MemoryForCausalLM(memory_config(memory_window="rolling")).eval(), word_tokenizer()
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows()))
    return model, tokenizer


def encode_args(root: Path, output: Path) -> list[str]:
    return ["--model", str(root / "model"), "--dataset", str(root / "corpus.jsonl"), "--output", str(output),
            *ENCODE_OPTIONS]
