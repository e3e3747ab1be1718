"""Hostile corpora and banks: every corpus row holds text of a bounded size, a bank's manifest never leads out of
the bank nor divides by zero, a bank resumes only onto the corpus it started with, and counts are positive. Each
case goes through the command line as a user types it (in-process) and checks the one line the user sees."""

import json
import re
import shutil

import pytest

import bank_fixtures
from memory_models.eval.banks import store
from memory_models.eval.cli import main as cli
from memory_models.training.data import corpora


def run(capsys, *argv) -> tuple[int, str]:
    """`memory-models ARGV` in this process: the exit code and the last line on stderr (no traceback)."""
    try:
        code = cli([str(arg) for arg in argv])
    except SystemExit as usage_error:  # argparse's usage errors exit 2 before the command runs
        code = usage_error.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


@pytest.fixture(scope="module")
def bank_root(tmp_path_factory):
    """A saved tiny memory model with its tokenizer, its corpus (24 documents) and a complete bank of 12 shards."""
    root = tmp_path_factory.mktemp("hostile")
    bank_fixtures.save_model_and_corpus(root)
    assert cli(["encode", *bank_fixtures.encode_args(root, root / "bank")]) == 0
    return root


def encode(root, dataset, output, *extra) -> list:
    return ["encode", "--model", root / "model", "--dataset", dataset, "--output", output,
            *bank_fixtures.ENCODE_OPTIONS, *extra]


def tampered(root, tmp_path, edit):
    bank = tmp_path / "bank"
    shutil.copytree(root / "bank", bank)
    manifest = json.loads((bank / store.MANIFEST).read_text())
    edit(manifest)
    (bank / store.MANIFEST).write_text(json.dumps(manifest))
    return bank


# --------------------------------------------------------------------------------------------- corpus rows
@pytest.mark.parametrize("row, message", [
    ({"id": "b"}, "no text (its text field is missing or null)"),
    ({"id": "b", "text": None}, "no text (its text field is missing or null)"),
    ({"id": "b", "text": 12345}, "a number (12345), not text"),
    ({"id": "b", "text": ["x", "y"]}, "a list (['x', 'y']), not text"),
], ids=["missing", "null", "number", "list"])
def test_corpus_rows_without_text_are_refused_by_row(bank_root, tmp_path, capsys, row, message):
    """encode and train's corpus loader refuse a row without a string text, naming the file and the row; no bank
    looks complete (nothing is stored as the text 'None' or '12345')."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "w5 w6 w7"}) + "\n" + json.dumps(row) + "\n")
    code, line = run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))
    assert (code, line) == (2, f"memory-models encode: error: the corpus '{corpus}', row 1 (counting from 0): "
                               f"{message}.")
    assert not json.loads((tmp_path / "bank" / store.MANIFEST).read_text())["complete"]
    with pytest.raises(ValueError, match=re.escape(f"row 1 (counting from 0): {message}")):
        corpora.load_corpus(str(corpus), "train")


def test_one_document_over_the_size_limit_is_refused(bank_root, tmp_path, capsys, monkeypatch):
    """A document longer than the limit is refused before it is tokenized (naming the row, its size and how to raise
    the limit); within a raised limit it is encoded."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "w5 w6"}) + "\n" + json.dumps({"id": "b", "text": "w7 " * 40})
                      + "\n")
    monkeypatch.setenv(corpora.MAX_DOCUMENT_CHARS_VARIABLE, "100")
    code, line = run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))
    assert code == 2 and line.endswith(f"row 1 (counting from 0): 120 characters, more than the 100 one document may "
                                       "have (tokenizing it would take about 0.0 GB of memory): split it into smaller "
                                       f"documents, or raise the limit with {corpora.MAX_DOCUMENT_CHARS_VARIABLE}.")
    with pytest.raises(ValueError, match="row 1 .*: 120 characters, more than the 100"):
        corpora.load_corpus(str(corpus), "all")
    monkeypatch.setenv(corpora.MAX_DOCUMENT_CHARS_VARIABLE, "120")
    assert run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))[0] == 0


# --------------------------------------------------------------------------------------------- manifests
@pytest.mark.parametrize("name", ["../../outside/secret", "/etc", "00000/../../../outside/secret"])
def test_bank_manifest_never_leads_out_of_the_bank(bank_root, tmp_path, capsys, name):
    """A shard named as a path out of the bank is refused by verify and by generate --memories (nothing is read
    there), naming the manifest and the shard."""
    outside = tmp_path / "outside" / "secret"
    shutil.copytree(bank_root / "bank" / "shards" / "00000", outside)  # a look-alike shard: SHA-256 would match
    bank = tampered(bank_root, tmp_path, lambda manifest: manifest["shards"][0].update(name=name))
    expected = (f"{bank / store.MANIFEST} is corrupted (the bank's manifest): shards[0]: name {name!r} is not a shard "
                f"of this bank (shard names are digits, inside {bank / 'shards'})")
    assert run(capsys, "verify", bank) == (2, f"memory-models verify: error: {expected}")
    code, line = run(capsys, "generate", "--model", bank_root / "model", "--memories", bank, "--document", "doc-0",
                     "--prompt", "w5")
    assert (code, line) == (2, f"memory-models generate: error: {expected}")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(shard_size=0), "shard_size must be a positive integer, got 0"),
    (lambda m: m["shards"][0].update(num_documents=-1), r"shards\[0\]: num_documents must be an integer >= 0, got -1"),
    (lambda m: m.update(num_documents=-5), "num_documents must be an integer >= 0, got -5"),
    (lambda m: m["fingerprint"].update(memory_width=0), "fingerprint.memory_width must be a positive integer, got 0"),
    (lambda m: m.update(index_buckets=0), "index_buckets must be an integer >= 1, got 0"),
], ids=["shard_size_0", "negative_shard_count", "negative_count", "width_0", "zero_buckets"])
def test_bank_manifest_sizes_are_checked(bank_root, tmp_path, capsys, edit, message):
    """Sizes and counts a manifest cannot hold are refused by verify with one line naming the field (never a
    ZeroDivisionError, never "every SHA-256 matches")."""
    bank = tampered(bank_root, tmp_path, edit)
    code, line = run(capsys, "verify", bank)
    assert code == 2 and re.search(f"corrupted \\(the bank's manifest\\): {message}$", line), line


# --------------------------------------------------------------------------------------------- resuming
def test_bank_resumed_onto_another_corpus_is_refused(bank_root, tmp_path, capsys, monkeypatch):
    """encode killed after 2 shards, the corpus file replaced, the same command again: refused (the bank keeps the
    old corpus's 2 shards, still incomplete); with the original corpus back it completes as an uninterrupted run."""
    corpus = tmp_path / "c.jsonl"
    shutil.copyfile(bank_root / "corpus.jsonl", corpus)
    real, written = store.write_shard, []

    def killed_after_two(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(store, "write_shard", killed_after_two)
    assert run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))[0] == 130
    monkeypatch.setattr(store, "write_shard", real)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    corpus.write_text("".join(json.dumps({**row, "text": "w9 " + row["text"]}) + "\n" for row in rows))
    code, line = run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))
    assert code == 2 and re.search(r"holds a memory bank made differently; not resuming: the corpus changed since "
                                   r"the bank was started \(its SHA-256 was [0-9a-f]{12}\.\.\., now [0-9a-f]{12}\.\.\.\)$",
                                   line), line
    assert store.written_shards(tmp_path / "bank") == 2
    shutil.copyfile(bank_root / "corpus.jsonl", corpus)
    assert run(capsys, *encode(bank_root, corpus, tmp_path / "bank"))[0] == 0
    shards = [[shard["sha256"] for shard in store.read_manifest(bank)["shards"]]
              for bank in (tmp_path / "bank", bank_root / "bank")]
    assert shards[0] == shards[1]


# --------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("value", ["0", "-1"])
def test_counts_must_be_positive(bank_root, tmp_path, capsys, value):
    """encode --num-documents and generate --max-context of 0 or less are usage errors naming the option: no empty
    "complete" bank is written, nothing is ignored or blamed on config.json."""
    code, line = run(capsys, *encode(bank_root, bank_root / "corpus.jsonl", tmp_path / "bank", "--num-documents",
                                     value))
    assert (code, line) == (2, f"memory-models encode: error: argument --num-documents: must be a positive integer, "
                               f"got {value}")
    assert not (tmp_path / "bank").exists()
    code, line = run(capsys, "generate", "--model", bank_root / "model", "--prompt", "w5", "--max-context", value)
    assert (code, line) == (2, f"memory-models generate: error: argument --max-context: must be a positive integer, "
                               f"got {value}")


def test_tokenizer_vocabulary_size_is_bounded(tmp_path, capsys):
    """tokenizer --vocab-size 1000000000 is refused with one line (the Rust trainer would try to allocate ~70 GB and
    abort); nothing is written."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one two three\nfour five six\n" * 5)
    code, line = run(capsys, "tokenizer", "--corpus", corpus, "--vocab-size", "1000000000", "--output",
                     tmp_path / "tokenizer")
    assert (code, line) == (2, "memory-models tokenizer: error: `vocab_size` must be between 267 (256 bytes + 11 "
                               "special tokens) and 2,097,152, got vocab_size=1000000000.")
    assert not (tmp_path / "tokenizer").exists()

