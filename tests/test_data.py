"""Tests of corpus loading and dataset preparation (paper §7.2), all offline."""

import json

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import memory_models.training.data.corpora as data
from memory_models.training.data.corpora import filter_full_length, load_corpus, records_documents, tokenize_corpus

WORDS = ["<|bos|>", "<|eos|>", "<|unk|>", "a", "b", "c", "d", "e", "f", "g"]


@pytest.fixture(scope="module")
def word_tokenizer():
    """A whitespace word-level tokenizer with known ids: eos = pad = 1, "a" = 3, "b" = 4, ..."""
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<|unk|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|bos|>", eos_token="<|eos|>", unk_token="<|unk|>", pad_token="<|eos|>"
    )


@pytest.fixture(scope="module")
def words():
    """Three documents of 3, 5 and 1 words."""
    return datasets.Dataset.from_dict({"text": ["a b c", "d e f g a", "b"]})


def test_python_docs_offline_deterministic_and_disjoint():
    """python-docs loads offline, is deterministic, sizeable, and its splits share no document."""
    train = load_corpus("python-docs", "train")
    test = load_corpus("python-docs", "test")
    assert train.column_names == ["text"]
    assert len(train) > 300 and len(test) > 10
    assert sum(len(text) for text in train["text"]) > 500_000
    assert not set(train["text"]) & set(test["text"])
    assert load_corpus("python-docs", "train")["text"] == train["text"]
    assert len(load_corpus("python-docs", num_documents=7)) == 7
    with pytest.raises(ValueError, match="validation"):
        load_corpus("python-docs", "validation")


def test_records_deterministic_by_seed():
    """records is a function of (seed, split): equal for equal seeds, different otherwise."""
    first = load_corpus("records", num_documents=20, seed=3)["text"]
    assert first == load_corpus("records", num_documents=20, seed=3)["text"]
    assert first != load_corpus("records", num_documents=20, seed=4)["text"]
    assert first != load_corpus("records", "test", num_documents=20, seed=3)["text"]
    assert len(first) == 20 and first[0].startswith("record 0: color = ")
    assert len(load_corpus("records")) == data.RECORDS_DEFAULT_DOCUMENTS
    with pytest.raises(ValueError, match="num_documents"):
        records_documents(0)


def test_local_txt_folder_and_file(tmp_path):
    """A folder of .txt files gives one document per file; a .txt file one document per line."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"document {i}\nsecond line", encoding="utf-8")
    assert load_corpus(str(folder), "all")["text"] == [f"document {i}\nsecond line" for i in range(3)]
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f"line {i}" for i in range(40)), encoding="utf-8")
    train, test = load_corpus(str(lines)), load_corpus(str(lines), "test")
    assert test["text"] == ["line 0", "line 20"]
    assert len(train) == 38 and "line 1" in train["text"]


def test_local_jsonl_and_parquet_columns(tmp_path):
    """jsonl and parquet files load with the chosen text column renamed to "text"."""
    rows = [{"body": f"text number {i}", "id": i} for i in range(5)]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    parquet = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    for path in (jsonl, parquet):
        dataset = load_corpus(str(path), "all", text_column="body")
        assert dataset.column_names == ["text"]
        assert dataset["text"] == [row["body"] for row in rows]
        with pytest.raises(ValueError, match=r"available columns: \['body', 'id'\]"):
            load_corpus(str(path), "all", text_column="content")


def test_fineweb_take_skip(monkeypatch):
    """fineweb-edu streams sample-10BT: test = the first FINEWEB_TEST_ROWS rows, train = the rest."""
    calls = []

    def fake_load_dataset(path, name=None, split=None, streaming=False):
        calls.append((path, name, split, streaming))
        rows = {"text": [f"doc {i}" for i in range(10)], "url": [f"u{i}" for i in range(10)]}
        return datasets.Dataset.from_dict(rows).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(data, "FINEWEB_TEST_ROWS", 3)
    test = load_corpus("fineweb-edu", "test")
    train = load_corpus("fineweb-edu", "train")
    assert isinstance(test, datasets.IterableDataset)
    assert [row["text"] for row in test] == ["doc 0", "doc 1", "doc 2"]
    assert [row["text"] for row in train] == [f"doc {i}" for i in range(3, 10)]
    assert list(next(iter(train))) == ["text"]
    assert [row["text"] for row in load_corpus("fineweb-edu", num_documents=2)] == ["doc 3", "doc 4"]
    assert calls[0] == ("HuggingFaceFW/fineweb-edu", "sample-10BT", "train", True)


def test_tokenize_truncate_right_and_left(words, word_tokenizer):
    """Truncate mode keeps each document's first max_length ids and pads with the pad id on the chosen side."""
    right = tokenize_corpus(words, word_tokenizer, 4)
    assert right.column_names == ["input_ids", "attention_mask"]
    assert right["input_ids"] == [[3, 4, 5, 1], [6, 7, 8, 9], [4, 1, 1, 1]]
    assert right["attention_mask"] == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    left = tokenize_corpus(words, word_tokenizer, 4, padding_side="left")
    assert left["input_ids"] == [[1, 3, 4, 5], [6, 7, 8, 9], [1, 1, 1, 4]]
    assert left["attention_mask"] == [[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]


def test_tokenize_pack(words, word_tokenizer):
    """Pack mode concatenates documents (eos between them) into full rows, dropping only the remainder."""
    packed = tokenize_corpus(words, word_tokenizer, 4, mode="pack")
    # a b c <eos> d e f g a <eos> b -> 11 ids -> 2 rows, remainder of 3 dropped
    assert packed["input_ids"] == [[3, 4, 5, 1], [6, 7, 8, 9]]
    assert packed["attention_mask"] == [[1] * 4] * 2
    no_eos = tokenize_corpus(words, word_tokenizer, 3, mode="pack", add_eos=False)
    assert no_eos["input_ids"] == [[3, 4, 5], [6, 7, 8], [9, 3, 4]]


def test_tokenize_bad_arguments(words, word_tokenizer):
    """Unknown modes, padding sides and lengths raise ValueError."""
    with pytest.raises(ValueError, match="'chunk'"):
        tokenize_corpus(words, word_tokenizer, 4, mode="chunk")
    with pytest.raises(ValueError, match="'top'"):
        tokenize_corpus(words, word_tokenizer, 4, padding_side="top")
    with pytest.raises(ValueError, match="max_length"):
        tokenize_corpus(words, word_tokenizer, 0)


def test_filter_full_length(words, word_tokenizer):
    """Only unpadded rows survive the full-length filter."""
    full = filter_full_length(tokenize_corpus(words, word_tokenizer, 4))
    assert full["input_ids"] == [[6, 7, 8, 9]]
    assert len(filter_full_length(tokenize_corpus(words, word_tokenizer, 1))) == 3


def test_hub_dataset_id(monkeypatch):
    """An unknown name that is not a local path is loaded as a Hub dataset id with the requested split."""
    calls = []

    def fake_load_dataset(path, split=None):
        calls.append((path, split))
        return datasets.Dataset.from_dict({"content": ["x", "y"], "meta": [1, 2]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset = load_corpus("someone/some-corpus", "test", text_column="content")
    assert calls == [("someone/some-corpus", "test")]
    assert dataset.column_names == ["text"] and dataset["text"] == ["x", "y"]


def test_tokenize_streaming_truncate(words, word_tokenizer):
    """Truncate mode also works lazily on a streaming dataset."""
    stream = tokenize_corpus(words.to_iterable_dataset(), word_tokenizer, 4)
    rows = list(stream)
    assert [row["input_ids"] for row in rows] == [[3, 4, 5, 1], [6, 7, 8, 9], [4, 1, 1, 1]]
    assert [row["input_ids"] for row in filter_full_length(stream)] == [[6, 7, 8, 9]]
    with pytest.raises(ValueError, match="IterableDataset"):
        tokenize_corpus(words.to_iterable_dataset(), word_tokenizer, 4, mode="pack")


def test_unknown_corpus_name_lists_the_known_ones(monkeypatch):
    """A name that is no corpus, no path and no reachable Hub dataset is one ValueError naming the known corpora
    and the Hub error (not the Hub client's traceback); the tokenizer command gets the same message."""
    from memory_models.training.data.tokenizer import main as tokenizer_main

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'NAME' on the Hub (LocalEntryNotFoundError)\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    expected = r"Unknown corpus 'NAME': not one of the known corpora \('python-docs', 'records', 'fineweb-edu', " \
               r"'finemath'\).*ConnectionError: Couldn't reach 'NAME' on the Hub \(LocalEntryNotFoundError\)\)\.$"
    with pytest.raises(ValueError, match=expected) as error:
        load_corpus("NAME", "train")
    assert error.value.__suppress_context__ and "more lines" not in str(error.value)
    with pytest.raises(ValueError, match="Unknown corpus 'NAME'"):
        tokenizer_main(["--corpus", "NAME", "--vocab-size", "300", "--output", "unused-tokenizer-dir"])
