"""Retrieval examples (training/data/retrieval.py): a later chunk asks for a fact stated in an earlier chunk."""

import pytest

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.data import retrieval
from memory_models.training.data.corpora import records_documents
from memory_models.training.data.tokenizer import train_tokenizer

CHUNK, SLOTS = 16, 4


@pytest.fixture(scope="module")
def encode():
    tokenizer = train_tokenizer(records_documents(200, 0, "train"), 400)
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
