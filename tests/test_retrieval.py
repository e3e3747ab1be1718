"""Retrieval examples (training/data/retrieval.py): a later chunk asks for a fact stated in an earlier chunk."""

import json
from types import SimpleNamespace

import datasets
import pytest

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.data import retrieval
from memory_models.training.data.corpora import load_corpus, records_documents
from memory_models.training.data.tokenizer import train_tokenizer
from memory_models.training import train
from memory_models.training.job import TrainJob
from memory_models.training.objectives import get_objective
from memory_models.training.objectives import retrieval as retrieval_objective

CHUNK, SLOTS = 16, 4


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(records_documents(200, 0, "train"), 400)


@pytest.fixture(scope="module")
def encode(tokenizer):
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_of(example):
    return [token for token in example["labels"] if token != IGNORE_INDEX]


def test_a_records_example_answers_with_the_stated_value_from_an_earlier_chunk(encode):
    """Every example's targets are exactly the asked value's tokens, at the end of the window, `distance` chunks
    (1 .. S-1) after the chunk where the record stated that value; every distance occurs."""
    documents = records_documents(20, 3, "train")
    examples = retrieval.records_examples(documents, encode, CHUNK, SLOTS, seed=3, every_distance=True)
    assert {example["distance"] for example in examples} == set(range(1, SLOTS))
    for example in examples:
        ids, answer = example["input_ids"], answer_of(example)
        assert len(ids) <= CHUNK * SLOTS and ids[-len(answer):] == answer
        assert example["labels"][: len(ids) - len(answer)] == [IGNORE_INDEX] * (len(ids) - len(answer))
        value = answer  # the value's tokens appear where the record states it, `distance` chunks before the answer
        starts = [i for i in range(len(ids) - len(answer)) if ids[i: i + len(value)] == value]
        assert starts, "the asked value is stated earlier in the window"
        assert (len(ids) - len(answer)) // CHUNK - starts[0] // CHUNK == example["distance"]


def test_records_questions_name_the_record_and_key_of_the_answer(encode):
    """The question names the record whose field is the answer, in one of the templates (natural language or the
    record restated up to the key)."""
    import random

    (fact, _), *_ = retrieval.record_facts(records_documents(1, 0, "train")[0], random.Random(0))
    head, values = retrieval._record_fields(fact.statements[0])
    key = next(k for k in retrieval.CATEGORICAL_KEYS if f"the {k} of" in fact.question or f"{k} does" in
               fact.question or fact.question.endswith(f"{k} ="))
    assert head.split(" ")[1] in fact.question and fact.answer == " " + values[key]
    assert all(statement[fact.value_start:].startswith(values[key]) for statement in fact.statements)


def test_any_corpus_from_context_question_answer_rows(encode):
    """JSON-lines rows `{"context", "question", "answer"}` give examples whose target is the answer; a row whose
    context lacks its answer, or with no question, is a ValueError naming the row."""
    rows = [{"context": f"The capital of land {i} is city{i} and its river is the flow{i}.",
             "question": f"Which city is the capital of land {i}?", "answer": f"city{i}"} for i in range(12)]
    examples = retrieval.qa_examples(rows, encode, CHUNK, SLOTS, seed=0)
    assert examples and all(0 < len(answer_of(e)) and e["distance"] in range(1, SLOTS) for e in examples)
    with pytest.raises(ValueError, match="row 1: its context does not contain the answer 'nowhere'"):
        retrieval.qa_examples([rows[0], {**rows[1], "answer": "nowhere"}], encode, CHUNK, SLOTS)
    with pytest.raises(ValueError, match="row 0 has no text in 'question'"):
        retrieval.qa_examples([{**rows[0], "question": None}], encode, CHUNK, SLOTS)
    with pytest.raises(ValueError, match="at least 2 memory slots"):
        retrieval.qa_examples(rows, encode, CHUNK, 1)


def test_the_retrieval_objective_lays_out_rows_of_the_records_corpus(tokenizer):
    """`--objective retrieval` rows are the laid-out examples of the split's records (ids, a full attention mask,
    answer-only labels), the window `context / chunk_size` chunks; a non-records document, or a context that is
    not whole chunks (two at least), is a ValueError naming it."""
    documents = records_documents(8, 1, "train")
    texts = datasets.Dataset.from_dict({"text": documents})
    config = SimpleNamespace(chunk_size=CHUNK)
    rows = retrieval_objective.retrieval_rows(texts, tokenizer, config, context=CHUNK * SLOTS, seed=1)
    expected = retrieval.records_examples(documents, retrieval.token_encoder(tokenizer), CHUNK, SLOTS, seed=1)
    assert len(rows) == len(expected) > len(documents)  # one question per record
    for row, example in zip(rows, expected):
        assert row["input_ids"] == example["input_ids"] and row["labels"] == example["labels"]
        assert row["attention_mask"] == [1] * len(row["input_ids"])
    with pytest.raises(ValueError, match="document 1 is neither: 'some prose'"):
        retrieval_objective.retrieval_rows(datasets.Dataset.from_dict({"text": [documents[0], "some prose"]}),
                                           tokenizer, config, context=CHUNK * SLOTS)
    with pytest.raises(ValueError, match=f"multiple of chunk_size={CHUNK} of at least two chunks, got --context 24"):
        retrieval_objective.retrieval_rows(texts, tokenizer, config, context=24)


def test_question_answer_files_give_retrieval_rows_of_any_corpus(tmp_path, tokenizer):
    """A JSON-lines file of `context` / `question` / `answer` rows, loaded with `--text-column context`, keeps its
    questions and answers beside the text, and its retrieval rows' targets are the answers."""
    rows = [{"context": f"The capital of land {i} is city{i} and its river is the flow{i}.",
             "question": f"Which city is the capital of land {i}?", "answer": f"city{i}"} for i in range(40)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    texts = load_corpus(str(path), "train", text_column="context")
    assert texts.column_names == ["text", "question", "answer"]
    made = retrieval_objective.retrieval_rows(texts, tokenizer, SimpleNamespace(chunk_size=CHUNK),
                                              context=CHUNK * SLOTS)
    encode = retrieval.token_encoder(tokenizer)
    answers = {tuple(encode(" " + row["answer"])) for row in rows}
    assert len(made) > 0 and all(tuple(answer_of(row)) in answers for row in made)


def test_combined_retrieval_trains_both_parts_and_evaluates_each(tmp_path, tokenizer):
    """The mixture's training rows are its parts' rows in equal numbers, each tagged with its part; a run logs the
    causal, copy and retrieval losses and evaluates retrieval (answer-token accuracy) beside clm and copy."""
    job = TrainJob(output_dir=str(tmp_path / "run"), preset="memory-transformer-tiny", objective="combined_retrieval",
                   dataset="records", train_documents=12, eval_documents=4, batch_size=4, max_steps=2, eval_steps=2,
                   trainer_options={"logging_steps": 1})
    texts = datasets.Dataset.from_dict({"text": records_documents(12, 0, "train")})
    config = SimpleNamespace(chunk_size=CHUNK // 2)
    rows = train.mixture_rows(get_objective("combined_retrieval"), texts, tokenizer, CHUNK * 2, config, job)
    tags = rows["objective"]
    assert tags.count("combined") == tags.count("retrieval") == 12
    assert all(label is None for label, tag in zip(rows["labels"], tags) if tag == "combined")
    summary = train.run(job)
    assert {"loss_clm", "loss_copy", "loss_retrieval"} <= set(summary["train_stream_loss_history"])
    final = summary["final"]
    assert {"eval_clm_accuracy", "eval_copy_accuracy", "eval_retrieval_accuracy"} <= set(final)
    assert 0.0 <= final["eval_retrieval_accuracy"] <= 1.0 and final["eval_retrieval_loss"] > 0
