"""How much of its text a memory bank still holds: a blank-copy read-out of its memories (the paper's blank-copy objective).

    memory-models bank-retention --model DIR --memories BANK [--num-documents N] [--output retention.json]

The model's decoder is asked to reproduce a span of `h = S/2` chunks from those chunks' memories alone, exactly as
the blank-copy objective trains it (`training.objectives.copy.copy_batch` with a blank `CopySettings`): the memories
of chunks `j .. j+h-1` are given as `memory_embeds`, the input is the copy half (delimiter, then blank tokens), and
every position predicts the next token of the span. Reported per document and overall: token accuracy (argmax ==
token) and `H_r = 1 - CE / ln(V)` over the span's copy targets, and the share of the document's tokens that were
read back. A model trained with the copy / blank-copy objective reads back what its memories retain; a causal-only
model scores near chance, which is what a user needs to know before trusting answers from a bank. The read-out
equals evaluating the blank-copy objective on the document's own tokens (tested), but uses the bank's stored
memories: it checks the bank, not a fresh encoding.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

import torch
import torch.nn.functional as F

from memory_models.conversion.safe_io import CREATED_BY, check_result_file, write_text_atomic
from memory_models.eval.banks.arguments import read_back_parser
from memory_models.eval.banks.bank import load_memory_bank, load_model_and_tokenizer
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.copy import copy_batch
from memory_models.modeling_memory.sequence_ops import next_token_targets
from memory_models.training.metrics import IGNORE_INDEX, accuracy_counts, entropy_ratio


def copy_readout_batch(model, span_ids: torch.LongTensor) -> dict:
    """The copy half of a blank-copy row for `span_ids` `[b, h]`: `input_ids` and `labels` `[b, h]`."""
    config = model.config
    row = torch.cat([span_ids, span_ids], dim=1)
    batch = copy_batch(row, settings=CopySettings.from_config(config, blank=True))
    half = span_ids.shape[1]
    return {"input_ids": batch["input_ids"][:, half:], "labels": batch["labels"][:, half:]}


def _check_model(model) -> int:
    slots = model.config.num_memory_slots
    if slots < 2 or slots % 2:
        raise ValueError(f"the blank-copy read-out needs an even num_memory_slots >= 2, got {slots}")
    if getattr(model, "encoder", None) is None:
        raise ValueError("the blank-copy read-out needs a model with an encoder (the copy half's own chunks)")
    return slots // 2


@torch.no_grad()
def document_readout(model, input_ids: Sequence[int], memories: torch.Tensor, batch_size: int = 16) -> dict:
    """Read-out sums of one document: `memories` `[n, d]` are its complete chunks' memories (e.g. from a bank)."""
    group = _check_model(model)
    chunk = model.config.chunk_size
    spans = memories.shape[0] // group
    sums = {"targets": 0, "correct": 0, "ce_sum": 0.0, "tokens_read": spans * group * chunk,
            "tokens": len(input_ids)}
    if spans == 0:
        return sums
    device = model.get_input_embeddings().weight.device
    ids = torch.tensor(list(input_ids)[: spans * group * chunk], dtype=torch.long, device=device).view(spans, -1)
    memory_groups = memories[: spans * group].view(spans, group, -1).to(device)
    for start in range(0, spans, batch_size):
        batch = copy_readout_batch(model, ids[start : start + batch_size])
        logits = model(input_ids=batch["input_ids"], memory_embeds=memory_groups[start : start + batch_size]).logits
        correct, count = accuracy_counts(logits, batch["labels"])  # position p predicts label p + 1
        sums["correct"] += correct
        sums["targets"] += count
        targets = next_token_targets(batch["labels"])
        valid = targets != IGNORE_INDEX
        sums["ce_sum"] += float(F.cross_entropy(logits[valid].float(), targets[valid], reduction="sum"))
    return sums


def _summary(sums: dict, vocab_size: int) -> dict:
    targets = sums["targets"]
    return {
        "token_accuracy": sums["correct"] / targets if targets else None,
        "entropy_ratio": float(entropy_ratio(sums["ce_sum"] / targets, vocab_size)) if targets else None,
        "targets": targets,
        "coverage": sums["tokens_read"] / sums["tokens"] if sums["tokens"] else 0.0,
    }


def bank_retention(model, bank, doc_ids: Sequence[str] | None = None, batch_size: int = 16) -> dict:
    """Per-document and overall (micro-averaged) blank-copy read-out of `bank`'s memories with `model`."""
    bank.check_compatible(model)
    vocab = model.config.vocab_size
    total = {"targets": 0, "correct": 0, "ce_sum": 0.0, "tokens_read": 0, "tokens": 0}
    documents = {}
    for doc_id in bank.ids if doc_ids is None else doc_ids:
        row = bank.document(doc_id)
        sums = document_readout(model, row["input_ids"], bank.memories(doc_id)[0], batch_size)
        documents[doc_id] = _summary(sums, vocab)
        for key in total:
            total[key] += sums[key]
    return {"documents": documents, "overall": _summary(total, vocab),
            "span_chunks": model.config.num_memory_slots // 2, "chunk_size": model.config.chunk_size}


def format_table(result: dict, limit: int = 20) -> str:
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    lines = ["| document | token accuracy | H_r | targets | coverage |", "|---|---|---|---|---|"]
    rows = list(result["documents"].items())
    for doc_id, row in rows[:limit]:
        lines.append(f"| {doc_id} | {cell(row['token_accuracy'])} | {cell(row['entropy_ratio'])} | {row['targets']} | "
                     f"{row['coverage']:.2f} |")
    if len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more | | | | |")
    overall = result["overall"]
    lines.append(f"| **overall** | {cell(overall['token_accuracy'])} | {cell(overall['entropy_ratio'])} | "
                 f"{overall['targets']} | {overall['coverage']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = read_back_parser().parse_args(argv)
    if args.output:
        check_result_file(args.output, beside=())  # new, or a result of ours: never a file of the user's
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, trust_remote_code=args.trust_remote_code)
    bank = load_memory_bank(args.memories, model, tokenizer)
    ids = bank.ids if args.num_documents is None else bank.ids[: args.num_documents]
    result = bank_retention(model, bank, ids, args.batch_size)
    if args.output:
        write_text_atomic(args.output, json.dumps({**CREATED_BY, **result}, indent=2))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
