"""Table 4 at small scale: lm-eval tasks over held-out documents of the `records` corpus (training.data.corpora).

`records_extraction` is SWDE-shaped: the context states one record in full, then starts the same record
again up to one of its keys (`"... record 3: color = teal; city ="`); the model must generate that key's
value, which it saw only earlier in the context (for a memory model, in an earlier chunk, i.e. in memory).
Metric `contains`, as SWDE: the value appears in the generated text. `records_perplexity` is the general
loglikelihood task (lm-eval's rolling loglikelihood: bits per byte, as WikiText in Table 4).

lm-eval imports this file by path (`custom_dataset: !function records.<name>` in the YAMLs next to it).
"""

import random
import re

CATEGORICAL_KEYS = ("color", "city", "animal", "fruit")


def _documents(num_documents: int, seed: int) -> list:
    from memory_models.training.data.corpora import records_documents

    return records_documents(int(num_documents), int(seed), split="test")


def document_records(document: str) -> list:
    """`"record 3: color = teal; ...; year = 1999."` strings of one document."""
    return [part if part.endswith(".") else part + "." for part in re.split(r"(?<=\.) (?=record )", document)]


def record_fields(record: str) -> tuple:
    """`("record 3", {"color": "teal", ...})` of one `"record 3: color = teal; ...; year = 1999."` string."""
    head, fields = record.split(": ", 1)
    return head, dict(field.split(" = ") for field in fields.rstrip(".").split("; "))


def extraction_docs(documents: list, seed: int = 0) -> list:
    """One question per document: its first record in full, then that record again up to a random key."""
    rng = random.Random(f"records-extraction-{seed}")
    docs = []
    for document in documents:
        record = document_records(document)[0]
        key = rng.choice(CATEGORICAL_KEYS)
        head, values = record_fields(record)
        order = list(values)
        prefix = "; ".join(f"{k} = {values[k]}" for k in order[: order.index(key)])
        question = f"{head}: {prefix + '; ' if prefix else ''}{key} ="
        docs.append({"text": f"{record} {question}", "key": key, "value": values[key]})
    return docs


def extraction_dataset(num_documents: int = 200, seed: int = 0, **metadata):
    """lm-eval calls a `custom_dataset` with the task's `metadata` (here `num_documents`, `seed`, `version`)."""
    import datasets

    docs = extraction_docs(_documents(num_documents, seed), int(seed))
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def perplexity_dataset(num_documents: int = 200, seed: int = 0, **metadata):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": _documents(num_documents, seed)})})


def contains_score(prediction: str, value: str) -> int:
    """1 when `value` occurs in `prediction` (case-insensitive), as SWDE's `contains`."""
    return int(re.search(re.escape(value), prediction, re.IGNORECASE) is not None)


def process_extraction(doc: dict, results: list) -> dict:
    return {"contains": contains_score(results[0], doc["value"])}
