"""Memory banks at corpus scale, in one process: streamed corpora, reading one document's shard only, finite
memories, file modes, and ids unique across shards."""

import os
import shutil
import stat

import datasets
import pytest
import torch

import bank_fixtures
from memory_models.eval.banks import encode as memory_encode, generate as memory_generate, store
from memory_models.eval.banks.bank import load_memory_bank, verify_bank
from memory_models.eval.banks.encode import encode_bank, open_corpus
from memory_models.training.data import corpora


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny model and corpus (`bank_fixtures`) and their bank from the in-memory rows (12 shards of 2)."""
    root = tmp_path_factory.mktemp("bank-scale")
    model, tokenizer = bank_fixtures.save_model_and_corpus(root)
    encode_bank(model, tokenizer, datasets.Dataset.from_list(bank_fixtures.rows()), root / "bank",
                shard_size=bank_fixtures.SHARD_SIZE, batch_size=3, show_progress=False)
    return root, model, tokenizer


def shard_hashes(folder):
    bank = load_memory_bank(folder)
    return [(s["name"], s["num_documents"], s["sha256"]) for s in bank.manifest["shards"]], bank.manifest["index_sha256"]


def test_streamed_corpus_gives_the_same_bank_as_rows_in_memory(saved, tmp_path, monkeypatch):
    """A JSON-lines file (streamed) and a Hub dataset id (streamed; a local look-alike folder stands in for the
    Hub) give byte-identical shards and index to the same rows held in memory."""
    root, model, tokenizer = saved
    local = open_corpus(str(root / "corpus.jsonl"))
    assert isinstance(local, datasets.IterableDataset)
    assert memory_encode.main(bank_fixtures.encode_args(root, tmp_path / "local")) == 0
    lookalike = tmp_path / "hub-lookalike"
    (lookalike / "data").mkdir(parents=True)
    shutil.copy(root / "corpus.jsonl", lookalike / "data" / "train-00000-of-00001.jsonl")
    calls, load_dataset = [], datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: calls.append((name, kw)) or load_dataset(
        str(lookalike) if name == "someone/corpus" else name, **kw))
    hub_args = bank_fixtures.encode_args(root, tmp_path / "hub")
    hub_args[hub_args.index("--dataset") + 1] = "someone/corpus"
    assert memory_encode.main(hub_args) == 0
    assert calls == [("someone/corpus", {"split": "train", "streaming": True})]
    reference = shard_hashes(root / "bank")
    assert len(reference[0]) == 12
    assert shard_hashes(tmp_path / "local") == reference and shard_hashes(tmp_path / "hub") == reference


def test_folder_of_text_files_streams_one_document_per_file(tmp_path):
    """A folder of `.txt` files: streamed, the same documents (one per file, in path order) as loaded in memory."""
    for name, text in (("b.txt", "second\nfile"), ("a.txt", "first file"), ("c/d.txt", "third")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    streamed = corpora.load_local_files(tmp_path, "all", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert [row["text"] for row in streamed] == corpora.load_local_files(tmp_path, "all")["text"] == [
        "first file", "second\nfile", "third"]


def test_reading_one_document_touches_only_its_shard(saved, tmp_path, capsys):
    """`generate --memories BANK --document ID` answers from a copy of the bank that keeps only that document's
    shard (every other shard folder deleted): opening the bank and reading one document touch nothing else,
    while `verify` (which reads every shard) names a missing one."""
    root, model, tokenizer = saved
    args = ["--model", str(root / "model"), "--document", "doc-9", "--prompt", "w7 w8", "--max-new-tokens", "3",
            "--memory-window", "rolling"]
    assert memory_generate.main([*args, "--memories", str(root / "bank")]) == 0
    expected = capsys.readouterr().out
    copy = tmp_path / "bank"
    shutil.copytree(root / "bank", copy)
    kept = "00004"  # doc-9 is row 9: shard 9 // 2
    for shard in (copy / "shards").iterdir():
        if shard.is_dir() and shard.name != kept:
            shutil.rmtree(shard)
    assert memory_generate.main([*args, "--memories", str(copy)]) == 0
    assert capsys.readouterr().out == expected and expected.strip()
    bank = load_memory_bank(copy)
    torch.testing.assert_close(bank.memories("doc-8"), load_memory_bank(root / "bank").memories("doc-8"))
    with pytest.raises(ValueError, match="shard 00000 is missing"):
        bank.memories("doc-0")
    with pytest.raises(ValueError, match="shard 00000 is missing"):
        verify_bank(copy)
    with pytest.raises(ValueError, match="document 'doc-99' is not in the bank"):
        bank.memories("doc-99")


def test_nan_encoder_never_gives_a_complete_bank(saved, tmp_path):
    """NaN encoder weights: encode stops at the first shard, naming the documents, and records nothing."""
    root, model, tokenizer = saved
    broken = type(model)(model.config).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.encoder.get_input_embeddings().weight[5:].fill_(float("nan"))
    corpus = datasets.Dataset.from_list(bank_fixtures.rows())
    with pytest.raises(ValueError, match=r"NaN or inf memories for the documents \['doc-\d+'.*\] \(shard 00000\); the "
                                         "shard is not recorded"):
        encode_bank(broken, tokenizer, corpus, tmp_path / "bank", shard_size=2, show_progress=False)
    assert not list((tmp_path / "bank" / "shards").iterdir())
    with pytest.raises(ValueError, match=r"incomplete \(0 of 12 shards written\)"):
        load_memory_bank(tmp_path / "bank")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_bank_files_get_the_modes_of_the_umask(saved, tmp_path, umask):
    """Every file and folder of a bank has the mode a plain open / mkdir gives under the user's umask."""
    root, model, tokenizer = saved
    previous = os.umask(umask)
    try:
        encode_bank(model, tokenizer, datasets.Dataset.from_list(bank_fixtures.rows()[:6]), tmp_path / "bank",
                    shard_size=2, show_progress=False)
    finally:
        os.umask(previous)
    paths = [tmp_path / "bank", *(tmp_path / "bank").rglob("*")]
    modes = {(p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in paths}
    assert modes == {(True, 0o777 & ~umask), (False, 0o666 & ~umask)}, sorted(modes)


def test_ids_repeated_across_shards_leave_the_bank_incomplete(saved, tmp_path):
    """Ids must be unique over the whole corpus: a repeat in another shard is named when the bank would be marked
    complete, and the bank stays incomplete."""
    root, model, tokenizer = saved
    rows = bank_fixtures.rows()[:6]
    rows[5]["id"] = "doc-0"
    with pytest.raises(ValueError, match=r"ids must be unique; the corpus repeats \['doc-0'\]"):
        encode_bank(model, tokenizer, datasets.Dataset.from_list(rows), tmp_path / "bank", shard_size=2,
                    show_progress=False)
    with pytest.raises(ValueError, match="incomplete"):
        load_memory_bank(tmp_path / "bank")


def test_index_in_many_buckets_finds_every_document(saved, tmp_path, monkeypatch):
    """With 4 ids per index bucket (6 buckets for 24 documents) every document is found in its bucket and reads
    the same row as in the one-bucket bank; `verify` counts every bucket's ids."""
    root, model, tokenizer = saved
    monkeypatch.setattr(store, "INDEX_BUCKET_SIZE", 4)
    encode_bank(model, tokenizer, datasets.Dataset.from_list(bank_fixtures.rows()), tmp_path / "bank",
                shard_size=bank_fixtures.SHARD_SIZE, batch_size=3, show_progress=False)
    bank, reference = load_memory_bank(tmp_path / "bank"), load_memory_bank(root / "bank")
    assert bank.manifest["index_buckets"] == 6 and reference.manifest["index_buckets"] == 1
    assert sorted(p.name for p in (tmp_path / "bank" / "index").iterdir() if p.is_dir()) == [f"0000{b}" for b in range(6)]
    assert verify_bank(tmp_path / "bank")["documents"] == 24
    for row in bank_fixtures.rows():
        assert bank.document(row["id"])["text"] == row["text"]
        torch.testing.assert_close(bank.memories(row["id"]), reference.memories(row["id"]))
