"""`retrieval` and `combined_retrieval`: questions about facts stated earlier in the window, answered from memories.

The paper trains copying and next-token prediction apart and expects "more benefits ... if the dataset were to
contain samples of natural language-based information retrieval" (§6). A `retrieval` row is one decoder window in
which a later chunk asks, in natural language, for a fact stated 1 .. S-1 chunks earlier, then answers it; only
the answer's tokens are targets (`training.data.retrieval` lays the rows out). Its loss is the `retrieval` stream,
weighed by the model config's `retrieval_loss_weight`.

`combined_retrieval` mixes it with the paper's combined objective: the corpus rows (each a causal row and a copy
row) and the retrieval rows of the same documents, in equal numbers (the smaller part repeated), each batch built
row by row by the part that made the row.

The rows come from the `records` corpus (one question per record), or, for any corpus, from question-answer data:
a file whose rows have `context`, `question` and `answer` (the context states the answer), loaded with
`--dataset FILE --text-column context`; the filler between a fact and its question is drawn from other contexts.
"""

from __future__ import annotations

import datasets
import torch

from memory_models.modeling_memory import IGNORE_INDEX
from memory_models.training.data.corpora import QA_COLUMNS
from memory_models.training.data.retrieval import qa_examples, records_examples, token_encoder
from memory_models.training.objectives import Objective
from memory_models.training.objectives.batch import (
    CopySettings, check_input_ids, resolve_attention_mask, resolve_labels, stream_ids,
)


def is_records_document(text: str) -> bool:
    """Whether `text` is a document of the `records` corpus (`"record 0: key = value; ... . record 1: ..."`)."""
    return isinstance(text, str) and text.startswith("record ") and ": " in text and " = " in text


def window_layout(config, context: int) -> tuple[int, int]:
    """`(chunk, chunks)` of a retrieval window of `context` tokens: whole chunks, at least two (a fact one chunk
    back); otherwise a `ValueError` naming the values."""
    chunk = getattr(config, "chunk_size", None)
    if not chunk:
        raise ValueError(f"the retrieval objective needs a model with chunks (a `chunk_size`), got "
                         f"{type(config).__name__}")
    if context % chunk or context // chunk < 2:
        raise ValueError(f"the retrieval objective needs --context a multiple of chunk_size={chunk} of at least two "
                         f"chunks, got --context {context}")
    return chunk, context // chunk


def retrieval_rows(texts, tokenizer, config, *, context: int, pack: bool = False, seed: int = 0) -> datasets.Dataset:
    """Retrieval rows of a corpus split: `input_ids`, `attention_mask` and answer-only `labels`, each question at a
    distance drawn from 1 .. `context / chunk_size` - 1 chunks. The split is the `records` corpus (one question per
    record), or question-answer data: `question` and `answer` columns beside the text (a file loaded with
    `--text-column context`, see `training.data.corpora.QA_COLUMNS`). `pack` does not apply (a row is one
    laid-out question)."""
    chunk, chunks = window_layout(config, context)
    encode = token_encoder(tokenizer)
    if set(QA_COLUMNS) <= set(texts.column_names or ()):
        qa = [{"context": row["text"], "question": row["question"], "answer": row["answer"]} for row in texts]
        rows = qa_examples(qa, encode, chunk, chunks, seed=seed)
    else:
        documents = list(texts["text"])
        strangers = [i for i, text in enumerate(documents) if not is_records_document(text)]
        if strangers:
            raise ValueError(f"retrieval rows come from the `records` corpus or from question-answer data (columns "
                             f"{QA_COLUMNS} beside the text); document {strangers[0]} is neither: "
                             f"{str(documents[strangers[0]])[:60]!r}")
        rows = records_examples(documents, encode, chunk, chunks, seed=seed)
    return datasets.Dataset.from_dict({
        "input_ids": [row["input_ids"] for row in rows],
        "attention_mask": [[1] * len(row["input_ids"]) for row in rows],
        "labels": [row["labels"] for row in rows],
    })


def retrieval_batch(
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    labels: torch.LongTensor | None = None,
    settings: CopySettings | None = None,
    pad_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """A retrieval batch (the registry's builder signature; `settings` do not apply): the rows as they are, with
    their own answer-only `labels` (padding ignored), tagged with the `retrieval` loss stream. Rows without labels
    are a `ValueError` (their targets would be every token)."""
    check_input_ids(input_ids)
    if labels is None:
        raise ValueError("retrieval rows carry their own answer-only `labels`; got rows without labels")
    mask = resolve_attention_mask(input_ids, attention_mask, pad_token_id)
    labels = resolve_labels(input_ids, mask, labels).masked_fill(mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "stream_ids": stream_ids("retrieval", input_ids.shape[0], input_ids.device)}


RETRIEVAL = Objective("retrieval", retrieval_batch, streams=("retrieval",), needs="memory", rows=retrieval_rows)
COMBINED_RETRIEVAL = Objective("combined_retrieval", None, streams=("clm", "copy", "retrieval"), needs="memory",
                               evaluation=None, parts=("combined", "retrieval"))
