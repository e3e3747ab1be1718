"""Retrieval examples: a later chunk asks for a fact stated in an earlier chunk, and answers it.

The paper (§6) expects "more benefits ... if the dataset were to contain samples of natural language-based
information retrieval": copying and next-token prediction, trained apart, do not teach a memory model to *look up*
a fact in its memories when asked. A retrieval example is one decoder window of `S x L` tokens,

    [fact] [filler] [question] [answer] [padding]

laid out so that the chunk holding the answer's first token comes `d` chunks after the chunk where the fact's value
was stated, with `d` drawn from 1 .. S-1: the value is never in the current chunk, only in a memory. Only the
answer's tokens are targets.

Two sources:

* the `records` corpus (`records_examples`): the fact is a record (`"record 12: color = teal; city = oslo; ..."`),
  the filler the words of the document's next records, and the question one of `QUESTION_TEMPLATES` about one of
  its categorical keys, in natural language (`"What is the city of record 12?"`) or by restating the record up
  to the key (`"record 12: color = teal; city ="`), the form `records_extraction` asks in;
* any corpus (`qa_examples`): JSON lines of `{"context": ..., "question": ..., "answer": ...}` (e.g. a reading-
  comprehension set, or facts extracted from your documents with their questions), with the filler drawn from the
  other contexts. The context must state the answer; its last occurrence of the answer text is the fact.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memory_models.modeling_memory import IGNORE_INDEX

CATEGORICAL_KEYS = ("color", "city", "animal", "fruit")
QUESTION_TEMPLATES = (
    "What is the {key} of record {number}?",
    "Question: which {key} does record {number} have? Answer:",
    "Tell me the {key} of record {number}:",
    "{restated}",  # "record 12: color = teal; city =": the record restated up to the key
)


@dataclass(frozen=True)
class Fact:
    """One question about a stated fact. `statements` state it, longest first (a record, then the record cut after
    later and later fields: a shorter statement reaches a shorter distance); the value starts at character
    `value_start` of each. The answer is `answer` (with its leading space, as it follows the question)."""

    statements: tuple[str, ...]
    value_start: int
    question: str
    answer: str


def token_encoder(tokenizer) -> Callable[[str], list[int]]:
    """`text -> ids` without special tokens: the fast tokenizer's own backend where there is one (a Python-level
    tokenizer call costs ~20x more, and laying out examples encodes many short strings)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return lambda text: backend.encode(text, add_special_tokens=False).ids
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def _record_fields(record: str) -> tuple[str, dict]:
    head, fields = record.split(": ", 1)
    return head, dict(field.split(" = ") for field in fields.rstrip(".").split("; "))


def record_facts(document: str, rng: random.Random) -> list[tuple[Fact, list[str]]]:
    """One question per record of a `records` document, with the words of the records after it as filler."""
    records = [part if part.endswith(".") else part + "." for part in document.split(". record ")]
    records = [records[0]] + [f"record {part}" for part in records[1:]]
    facts = []
    for index, record in enumerate(records):
        head, values = _record_fields(record)
        key = rng.choice(CATEGORICAL_KEYS)
        order = list(values)
        before = "".join(f"{k} = {values[k]}; " for k in order[: order.index(key)])
        template = rng.choice(QUESTION_TEMPLATES)
        question = template.format(key=key, number=head.split(" ")[1], restated=f"{head}: {before}{key} =")
        value_start = record.index(f"{key} = ") + len(f"{key} = ")
        statements = tuple(f"{head}: " + "; ".join(f"{k} = {values[k]}" for k in order[:last]) + "."
                           for last in range(len(order), order.index(key), -1))
        filler = " ".join(records[index + 1:] + records[:index]).split(" ")
        facts.append((Fact(statements, value_start, question, " " + values[key]), filler))
    return facts


def qa_facts(rows: Sequence[dict]) -> list[tuple[Fact, list[str]]]:
    """Facts of `{"context", "question", "answer"}` rows (the filler: the other rows' contexts). A row whose context
    does not contain its answer is a `ValueError` naming it."""
    facts = []
    for index, row in enumerate(rows):
        for field in ("context", "question", "answer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise ValueError(f"retrieval row {index} has no text in {field!r}: {row.get(field)!r}")
        start = row["context"].rfind(row["answer"].strip())
        if start < 0:
            raise ValueError(f"retrieval row {index}: its context does not contain the answer {row['answer']!r}")
        others = " ".join(rows[(index + k) % len(rows)]["context"] for k in range(1, min(len(rows), 4)))
        facts.append((Fact((row["context"],), start, row["question"].strip(), " " + row["answer"].strip()),
                      others.split(" ")))
    return facts


def layout(fact: Fact, filler: list[str], distance: int, encode: Callable[[str], list[int]], chunk: int,
           slots: int) -> dict | None:
    """The window of one example at `distance` chunks, or `None` when it cannot be laid out in `S x L` tokens.

    The statement's text before its value is encoded apart from the rest, so the value's first token index is
    exact; the longest statement that reaches `distance` is used, with filler words added one at a time (encoded
    as needed) until the answer sits `distance` chunks after the value.
    """
    window = chunk * slots
    question, answer = encode(" " + fact.question), encode(fact.answer)
    words = (encode(" " + word) for word in filler if word)
    encoded_words: list[list[int]] = []
    for statement in fact.statements:
        head = encode(statement[: fact.value_start - 1])  # up to the space before the value
        stated = head + encode(statement[fact.value_start - 1:])
        used: list[int] = []
        for count in range(len(filler) + 1):
            if count:
                if count > len(encoded_words):
                    encoded_words.append(next(words, []))
                used += encoded_words[count - 1]
            ids = stated + used + question + answer
            answer_start = len(ids) - len(answer)
            gap = answer_start // chunk - len(head) // chunk
            if len(ids) > window or gap > distance:
                break
            if gap == distance:
                return {"input_ids": ids, "labels": [IGNORE_INDEX] * answer_start + answer, "distance": distance}
    return None


def examples(facts: list[tuple[Fact, list[str]]], encode_text: Callable[[str], list[int]], chunk: int, slots: int,
             seed: int, every_distance: bool = False) -> list[dict]:
    """Laid-out examples: one per fact at a random distance 1 .. S-1 (`every_distance`: one per reachable
    distance, the evaluation's layout). Facts that fit no distance are skipped."""
    if slots < 2:
        raise ValueError(f"retrieval needs at least 2 memory slots (a fact 1 chunk back), got {slots}")
    rng = random.Random(f"retrieval-{seed}")
    encode = functools.lru_cache(maxsize=1 << 16)(lambda text: tuple(encode_text(text)))
    encode_list = lambda text: list(encode(text))  # noqa: E731  (memoised: words and questions repeat)
    out = []
    for fact, filler in facts:
        distances = list(range(1, slots))
        rng.shuffle(distances)
        for distance in distances:
            example = layout(fact, filler, distance, encode_list, chunk, slots)
            if example is not None:
                out.append(example)
                if not every_distance:
                    break
    return out


def records_examples(documents: Sequence[str], encode: Callable[[str], list[int]], chunk: int, slots: int,
                     seed: int = 0, every_distance: bool = False) -> list[dict]:
    """Retrieval examples of `records` documents (one question per record)."""
    rng = random.Random(f"retrieval-questions-{seed}")
    facts = [fact for document in documents for fact in record_facts(document, rng)]
    return examples(facts, encode, chunk, slots, seed, every_distance)


def qa_examples(rows: Sequence[dict], encode: Callable[[str], list[int]], chunk: int, slots: int, seed: int = 0,
                every_distance: bool = False) -> list[dict]:
    """Retrieval examples of `{"context", "question", "answer"}` rows (any corpus)."""
    return examples(qa_facts(rows), encode, chunk, slots, seed, every_distance)
