"""`memory-models generate`: continue a prompt with a memory model, optionally reading a document from a bank.

    memory-models generate --model DIR --prompt "Question: ..."
    memory-models generate --model DIR --memories BANK --document ID --prompt "Question: ..." [--memory-window rolling]

With `--memories`, the document's memories come from the bank (checked against the model first) and only its
tail tokens (after the last complete chunk) and the prompt are fed: the result equals generating from the
document's tokens followed by the prompt, without encoding the document again.
"""

from __future__ import annotations

import sys
from typing import Sequence

import torch

from eval.banks.arguments import generate_parser
from eval.banks.bank import load_memory_bank, load_model_and_tokenizer


def generation_inputs(model, tokenizer, prompt: str, bank=None, document=None) -> dict:
    """Model inputs for `prompt`, after `document`'s memories and tail tokens when a bank is given."""
    if (bank is None) != (document is None):
        raise ValueError("--memories and --document go together")
    if bank is None:
        return {"input_ids": tokenizer(prompt, return_tensors="pt")["input_ids"]}
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return bank.generation_inputs(document, prompt_ids)


def main(argv: Sequence[str] | None = None) -> int:
    args = generate_parser().parse_args(argv)
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, memory_window=args.memory_window,
                                                max_context=args.max_context)
    bank = load_memory_bank(args.memories, model, tokenizer) if args.memories else None
    inputs = generation_inputs(model, tokenizer, args.prompt, bank, args.document)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                                pad_token_id=model.config.pad_token_id)
    print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
