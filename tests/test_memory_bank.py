"""Memory banks (eval/banks): encode a corpus once, open it, answer from it one document at a time."""

import json
import os
import shutil

import datasets
import numpy as np
import pytest
import torch

from cases_memory import CHUNK, VOCAB, memory_config, word_tokenizer, words
from memory_models.eval.banks import bank as memory_bank, encode as memory_encode, generate as memory_generate
from memory_models.eval.banks.bank import load_memory_bank, verify_bank
from memory_models.eval.banks.encode import encode_bank
from memory_models.modeling_memory import MemoryForCausalLM

DOC_LENGTHS = (3, 9, 22, 41)  # tokens; chunk 4: 0, 2, 5 and 10 memories


def documents(lengths=DOC_LENGTHS):
    generator = torch.Generator().manual_seed(5)
    return [torch.randint(3, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def build(seed=0, **kw):
    torch.manual_seed(seed)
    return MemoryForCausalLM(memory_config(**kw)).eval()


def corpus(texts, ids):
    return datasets.Dataset.from_dict({"id": list(ids), "text": list(texts)})


def greedy(model, new_tokens=4, **inputs):
    return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model (saved with the default bounded window, used with the rolling one) and its tokenizer saved to a
    folder, a JSON-lines corpus, and its bank made by `memory-models encode` (2 documents per shard, 3 chunks
    per encoder call)."""
    root = tmp_path_factory.mktemp("bank")
    model, tokenizer = build(), word_tokenizer()
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    model.config.memory_window = "rolling"
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{i}", "text": words(d)}) + "\n" for i, d in enumerate(documents())))
    assert memory_encode.main(["--model", str(root / "model"), "--dataset", str(corpus), "--output", str(root / "bank"),
                             "--shard-size", "2", "--batch-size", "3"]) == 0
    return root, model, tokenizer


def test_bank_rows_and_fingerprint(saved):
    """One row per document with its tokens, tail and memories (= model.encode of its complete chunks)."""
    root, model, tokenizer = saved
    bank = load_memory_bank(root / "bank", model, tokenizer)
    assert bank.ids == [f"doc-{i}" for i in range(4)]
    assert [s["name"] for s in bank.manifest["shards"]] == ["00000", "00001"]
    for i, doc in enumerate(documents()):
        row = bank.document(f"doc-{i}")
        complete = len(doc) // CHUNK * CHUNK
        assert list(row["input_ids"]) == doc and list(row["tail_ids"]) == doc[complete:]
        memories = bank.memories(f"doc-{i}")
        assert memories.shape == (1, len(doc) // CHUNK, 32)
        if complete:
            torch.testing.assert_close(memories, model.encode(torch.tensor([doc[:complete]])))
    fingerprint = bank.fingerprint
    assert (fingerprint["chunk_size"], fingerprint["pooling"], fingerprint["memory_width"]) == (CHUNK, "last", 32)
    assert fingerprint["encoder_weights_sha256"] == memory_bank.encoder_weights_sha256(model)
    assert fingerprint["tokenizer_sha256"] == memory_bank.tokenizer_sha256(tokenizer)


@pytest.mark.parametrize("window", ["rolling", "bounded"])
def test_generation_from_bank_equals_generation_from_tokens(saved, tmp_path, window):
    """The key identity: greedy generation from a saved and reloaded bank equals generation with the document
    given as tokens (bounded window: the documents that fit it)."""
    root, model, tokenizer = saved
    folder = root / "bank"
    docs = documents()
    if window == "bounded":
        model, docs = build(), documents((3, 9, 6))
        folder = encode_bank(model, tokenizer, corpus([words(d) for d in docs], ["a", "b", "c"]), tmp_path / "bank",
                             show_progress=False)["folder"]
    bank = load_memory_bank(folder, model, tokenizer)
    prompt = [7, 8]
    for doc_id, doc in zip(bank.ids, docs):
        from_bank = greedy(model, **bank.generation_inputs(doc_id, prompt))
        from_tokens = greedy(model, input_ids=torch.tensor([doc + prompt]))
        assert torch.equal(from_bank[:, -4:], from_tokens[:, -4:]), doc_id


def test_generate_command_reads_the_bank(saved, capsys):
    """`memory-models generate --memories BANK --document ID` prints the continuation of document + prompt; the
    document (10 memories) needs the rolling window, chosen on the command line for the bounded saved model."""
    root, model, tokenizer = saved
    doc = documents()[3]
    expected = greedy(model, 5, input_ids=torch.tensor([doc + [7, 8]]))[0, -5:]
    memory_generate.main(["--model", str(root / "model"), "--memories", str(root / "bank"), "--document", "doc-3",
                          "--prompt", "w7 w8", "--max-new-tokens", "5", "--memory-window", "rolling"])
    assert capsys.readouterr().out.strip() == tokenizer.decode(expected, skip_special_tokens=True)


def test_mismatched_bank_is_refused(saved):
    """Another encoder, chunk size or tokenizer is refused naming the difference; an encoder-less model with the
    same chunk size and width accepts the bank."""
    root, model, tokenizer = saved
    with pytest.raises(ValueError, match="encoder_weights_sha256"):
        load_memory_bank(root / "bank", build(seed=1, memory_window="rolling"), tokenizer)
    with pytest.raises(ValueError, match="tokenizer_sha256"):
        load_memory_bank(root / "bank", model, word_tokenizer(prefix="v"))
    other_chunk = memory_config(encoder=None)
    other_chunk.chunk_size = 2
    with pytest.raises(ValueError, match="chunk_size: bank 4 != model 2"):
        load_memory_bank(root / "bank", MemoryForCausalLM(other_chunk))
    decoder_only = MemoryForCausalLM(memory_config(encoder=None, memory_window="rolling")).eval()
    bank = load_memory_bank(root / "bank", decoder_only, tokenizer)
    inputs = bank.generation_inputs("doc-2", [7])  # 5 memories + 3 tokens: one chunk, no encoder needed
    assert decoder_only(**inputs).logits.shape == (1, 3, VOCAB)


def test_corrupted_or_foreign_folders_are_refused(saved, tmp_path, capsys):
    """Changed shard bytes are refused when that shard is read (naming it) and by `verify`, while the other
    shards still answer; a broken manifest and folders that are not banks give clear ValueErrors; encode never
    writes into a folder it did not create."""
    root, model, tokenizer = saved
    copy = tmp_path / "copy"
    shutil.copytree(root / "bank", copy)
    assert memory_bank.main([str(copy)]) == 0
    assert "4 documents in 2 shards" in capsys.readouterr().out
    arrow = sorted((copy / "shards" / "00001").glob("*.arrow"))[0]
    data = bytearray(arrow.read_bytes())
    data[-20] ^= 0xFF
    arrow.write_bytes(bytes(data))
    bank = load_memory_bank(copy)
    assert list(bank.document("doc-1")["input_ids"]) == documents()[1]
    with pytest.raises(ValueError, match="corrupted: the files of shard 00001"):
        bank.memories("doc-2")
    with pytest.raises(ValueError, match="corrupted: the files of shard 00001"):
        memory_bank.main([str(copy)])
    (copy / "memory_bank.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupted"):
        load_memory_bank(copy)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="memory-models did not create"):
        encode_bank(model, tokenizer, corpus(["w3 w4"], ["x"]), foreign, show_progress=False)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="is not a memory bank"):
        load_memory_bank(foreign)


def test_interrupted_encoding_resumes(saved, tmp_path, monkeypatch):
    """An interrupted encode leaves a bank that refuses to load as incomplete; rerunning encodes only the missing
    shards (and one whose files changed) and gives the same bank as an uninterrupted run."""
    root, model, tokenizer = saved
    texts, ids = [words(d) for d in documents()], [f"doc-{i}" for i in range(4)]
    calls, original = [], memory_encode.encode_documents

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(memory_encode, "encode_documents", failing)
    with pytest.raises(KeyboardInterrupt):
        encode_bank(model, tokenizer, corpus(texts, ids), tmp_path / "bank", shard_size=1, show_progress=False)
    assert sorted(p.name for p in (tmp_path / "bank" / "shards").iterdir()) == [
        "00000", "00000.json", "00001", "00001.json"]  # no temporary folder left
    with pytest.raises(ValueError, match=r"incomplete \(2 of 4 shards written\)"):
        load_memory_bank(tmp_path / "bank")
    with pytest.raises(ValueError, match="not resuming: source"):
        encode_bank(model, tokenizer, corpus(texts[:3], ids[:3]), tmp_path / "bank", shard_size=1,
                    show_progress=False)
    (tmp_path / "bank" / "shards" / "00000" / "state.json").write_text("{}")  # a shard changed since it was written
    calls.clear()
    monkeypatch.setattr(memory_encode, "encode_documents", lambda *a, **k: calls.append(1) or original(*a, **k))
    encode_bank(model, tokenizer, corpus(texts, ids), tmp_path / "bank", shard_size=1, show_progress=False)
    assert len(calls) == 3  # shards 00000 (changed), 00002 and 00003
    resumed, reference = load_memory_bank(tmp_path / "bank"), load_memory_bank(root / "bank")
    assert resumed.ids == ids and verify_bank(tmp_path / "bank")["documents"] == 4
    for doc_id in ids:
        torch.testing.assert_close(resumed.memories(doc_id), reference.memories(doc_id))


def test_bank_retention_equals_blank_copy_evaluation(saved, capsys):
    """The bank read-out (stored memories) equals evaluating the blank-copy objective on the document's tokens
    (memories recomputed by a full forward), span by span; the command prints the per-document table."""
    from memory_models.eval.banks.read_back import bank_retention, copy_readout_batch
    from memory_models.training.objectives.batch import CopySettings
    from memory_models.training.objectives.copy import copy_batch

    root, model, tokenizer = saved
    bank = load_memory_bank(root / "bank", model, tokenizer)
    result = bank_retention(model, bank)
    doc = torch.tensor(documents()[3][: 5 * 2 * CHUNK]).view(5, 2 * CHUNK)  # 10 memories: 5 spans of 2 chunks
    settings = CopySettings(blank=True, blank_token_id=1, delimiter_token_id=3)
    full = copy_batch(torch.cat([doc, doc], 1), settings=settings)
    with torch.no_grad():
        scores = model(input_ids=full["input_ids"]).logits[:, 2 * CHUNK : -1]
    targets = full["labels"][:, 2 * CHUNK + 1 :]
    valid = targets != -100
    assert torch.equal(copy_readout_batch(model, doc)["labels"][:, 1:], targets)
    row = result["documents"]["doc-3"]
    assert row["targets"] == int(valid.sum()) and row["coverage"] == 40 / 41
    accuracy = (scores[valid].argmax(-1) == targets[valid]).float().mean().item()
    ce = torch.nn.functional.cross_entropy(scores[valid], targets[valid]).item()
    torch.testing.assert_close(row["token_accuracy"], accuracy)
    torch.testing.assert_close(row["entropy_ratio"], 1 - ce / torch.log(torch.tensor(float(VOCAB))).item())
    assert result["documents"]["doc-0"]["targets"] == 0  # 3 tokens: no memory to read back
    from memory_models.eval.banks import read_back as command

    assert command.main(["--model", str(root / "model"), "--memories", str(root / "bank")]) == 0
    assert "| doc-3 |" in capsys.readouterr().out
