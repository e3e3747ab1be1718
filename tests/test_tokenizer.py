"""Tests of byte-level BPE tokenizer training and its special-token conventions (paper §7.1)."""

import json
import os
import stat

import pytest
from transformers import PreTrainedTokenizerFast

from memory_models.training.data.tokenizer import load_default_tokenizer, main, special_token_ids, train_tokenizer
from tokenizer_loading import assert_tokenizer_loads_quietly

TEXTS = [
    "The memory model encodes each chunk into one embedding.",
    "A decoder reads the memories of the preceding chunks.",
    "Copy the first half of the sequence after the delimiter.",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny tokenizer (vocabulary 300) trained on a few sentences."""
    return train_tokenizer(TEXTS, vocab_size=300, num_reserved_tokens=4)


def test_special_token_ids_are_fixed(tokenizer):
    """bos=0, eos=pad=1, unk=2 and the reserved tokens from id 3, in order."""
    tokens = ["<|bos|>", "<|eos|>", "<|unk|>"] + [f"<|reserved_{i}|>" for i in range(4)]
    assert tokenizer.convert_tokens_to_ids(tokens) == list(range(7))
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 1)
    assert tokenizer.unk_token_id == 2
    assert 256 + 7 < len(tokenizer) <= 300


def test_special_token_ids_helper(tokenizer):
    """special_token_ids gives the ids a model config records."""
    assert special_token_ids(tokenizer) == {
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "blank_token_id": 1,
        "copy_delimiter_token_id": 3,
    }


def test_unicode_round_trip(tokenizer):
    """Any string, including unseen unicode, decodes back exactly; no special tokens are added."""
    text = "Grüße, 世界! ñandú — memory 🧠 models\n\ttabs"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert 0 not in ids and 1 not in ids
    assert tokenizer.unk_token_id not in ids


def test_save_load_round_trip(tokenizer, tmp_path):
    """A saved and reloaded tokenizer encodes identically and keeps its special tokens."""
    tokenizer.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    text = "The decoder copies 12 chunks <|reserved_0|> again."
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert special_token_ids(loaded) == special_token_ids(tokenizer)


def test_training_is_deterministic(tokenizer):
    """Training twice on the same texts gives the same vocabulary."""
    again = train_tokenizer(TEXTS, vocab_size=300, num_reserved_tokens=4)
    assert again.get_vocab() == tokenizer.get_vocab()


def test_bad_arguments_raise():
    """Too small vocabularies and no reserved tokens raise ValueError naming the values."""
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(ValueError, match="num_reserved_tokens"):
        train_tokenizer(TEXTS, vocab_size=300, num_reserved_tokens=0)


def test_main_writes_folder(tmp_path, capsys):
    """The CLI trains on a corpus and writes the tokenizer plus special_tokens.json."""
    output = tmp_path / "tok"
    main(["--corpus", "records", "--vocab-size", "300", "--num-documents", "50", "--output", str(output)])
    assert (output / "tokenizer.json").is_file()
    ids = json.loads((output / "special_tokens.json").read_text())
    assert ids["pad_token_id"] == 1 and ids["copy_delimiter_token_id"] == 3
    loaded = PreTrainedTokenizerFast.from_pretrained(output)
    assert loaded.decode(loaded("record 7: color = teal")["input_ids"]) == "record 7: color = teal"
    assert assert_tokenizer_loads_quietly(output)("record 7")["input_ids"] == loaded("record 7")["input_ids"]
    assert "vocab size" in capsys.readouterr().out


def test_load_default_tokenizer_caches(tmp_path):
    """The default python-docs tokenizer is trained once, cached in a folder (mode 0755 under umask 022), then loaded."""
    old = os.umask(0o022)
    try:
        first = load_default_tokenizer(vocab_size=512, cache_dir=tmp_path)
    finally:
        os.umask(old)
    folder = tmp_path / "tokenizer-python-docs-512"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert (folder / "special_tokens.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind
    second = load_default_tokenizer(vocab_size=512, cache_dir=tmp_path)
    assert second.get_vocab() == first.get_vocab() and len(first) == 512
