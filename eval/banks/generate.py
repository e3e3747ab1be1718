"""`memory-models generate`: continue a prompt with a memory model, optionally reading a document from a bank.

    memory-models generate --model DIR --prompt "Question: ..."
    memory-models generate --model DIR --memories BANK --document ID --prompt "Question: ..."
    memory-models generate --model DIR --memories BANK --document ID1 ID2 ... --prompt "..." --server URL

With `--memories`, the document's memories come from the bank (checked against the model first) and only its
tail tokens (after the last complete chunk) and the prompt are fed: the result equals generating from the
document's tokens followed by the prompt, without encoding the document again.

The memory window defaults to `rolling`: it gives the same tokens as the bounded window wherever the bounded one
fits, and continues past it. Before any compute, the prompt (with the document's memories) plus
`--max-new-tokens` is checked against the window (`--memory-window bounded` holds `num_memory_slots` chunks;
`rolling` accepts `--max-context` tokens), an empty prompt is refused, and logits that are not finite stop the
generation instead of printing an empty answer.

With `--server URL` the decoder runs in a vLLM server of the same model (`memory-models serve`,
`eval.serving.client`): greedy decoding gives the same tokens; `--stream` prints them as they arrive, and several
`--document`s are answered concurrently (`--concurrency`), one JSON line each (as without `--server`).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

import torch

from memory_models.eval.banks.arguments import generate_parser
from memory_models.eval.banks.bank import load_memory_bank, load_model_and_tokenizer


def generation_inputs(model, tokenizer, prompt: str, bank=None, document=None) -> dict:
    """Model inputs for `prompt`, after `document`'s memories and tail tokens when a bank is given."""
    if (bank is None) != (document is None):
        raise ValueError("--memories and --document go together")
    if bank is None:
        input_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        if input_ids.shape[1] == 0:
            raise ValueError("--prompt is empty (it gives no tokens): give the text to continue")
        return {"input_ids": input_ids}
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return bank.generation_inputs(document, prompt_ids)


def check_window(config, inputs: dict, max_new_tokens: int) -> None:
    """Refuse a generation that would outgrow the memory window, before any compute.

    The model reads `n_memories * chunk_size + prompt + max_new_tokens - 1` positions (the last new token is never
    fed back); the model's window rule (`MemoryConfig.window_holds`) decides for a bounded window, and a rolling one
    is held to the context it advertises, `max_position_embeddings` (`--max-context`).
    """
    memories = inputs["memory_embeds"].shape[1] if "memory_embeds" in inputs else 0
    prompt = inputs["input_ids"].shape[1]
    needed = memories * config.chunk_size + prompt + max_new_tokens - 1
    window = config.max_position_embeddings
    if config.window_holds(needed) and needed <= window:
        return
    given = f"the prompt ({prompt} tokens" + (f" after {memories} memories of the document" if memories else "") + ")"
    if not config.window_holds(needed):
        raise ValueError(f"{given} plus --max-new-tokens {max_new_tokens} needs {needed} positions, more than the "
                         f"bounded memory window holds ({config.num_memory_slots} chunks of {config.chunk_size} = "
                         f"{window}); pass --memory-window rolling to generate past it, or fewer --max-new-tokens")
    raise ValueError(f"{given} plus --max-new-tokens {max_new_tokens} needs {needed} positions, more than the "
                     f"{window} the rolling window allows; pass a larger --max-context, or fewer --max-new-tokens")


def generate(model, inputs: dict, max_new_tokens: int, do_sample: bool = False) -> torch.LongTensor:
    """The new token ids `[n]` of a greedy (or sampled) continuation of `inputs` (batch 1); logits that are not
    finite are a `ValueError` (an answer decoded from them would be empty or garbage)."""
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                pad_token_id=model.config.pad_token_id, output_scores=True,
                                return_dict_in_generate=True)
    for step, scores in enumerate(output.scores):
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(f"the model produced NaN or inf logits at new token {step + 1} (its activations "
                             f"overflow in {model.dtype}?): no answer to print")
    return output.sequences[0, inputs["input_ids"].shape[1] :]


def _check_options(args) -> None:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    if args.server is None and (args.stream or args.concurrency is not None):
        raise ValueError("--stream and --concurrency need --server")
    if args.stream and len(args.document or [None]) > 1:
        raise ValueError(f"--stream prints one answer as it arrives: give one --document, not {len(args.document)}")


def _client(args, model):
    from memory_models.eval.serving.client import MemoryModelClient  # only with --server

    return MemoryModelClient(args.server, model, timeout=args.timeout)


def stream_answer(args, model, tokenizer, inputs: dict) -> None:
    """Print the answer from the server at `--server` as it arrives (whole characters only)."""
    tokens, printed = [], ""

    def show(new: list[int]) -> None:
        nonlocal printed
        tokens.extend(new)
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        if text.startswith(printed):  # a piece that decodes differently once complete waits for the next one
            print(text[len(printed):], end="", flush=True)
            printed = text

    answer = _client(args, model).generate(inputs, args.max_new_tokens, args.do_sample, args.seed, on_tokens=show)
    print(tokenizer.decode(answer, skip_special_tokens=True)[len(printed):])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m memory_models.eval.banks.generate ...` (the CLI calls `run_args` on the options it parsed)."""
    return run_args(generate_parser().parse_args(argv))


def run_args(args) -> int:
    """`memory-models generate` on its parsed options."""
    _check_options(args)
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, memory_window=args.memory_window,
                                                max_context=args.max_context, trust_remote_code=args.trust_remote_code)
    bank = load_memory_bank(args.memories, model, tokenizer) if args.memories else None
    documents = args.document or [None]
    inputs = [generation_inputs(model, tokenizer, args.prompt, bank, document) for document in documents]
    for row in inputs:
        check_window(model.config, row, args.max_new_tokens)
    torch.manual_seed(args.seed)
    if args.stream:
        stream_answer(args, model, tokenizer, inputs[0])
        return 0
    if args.server is not None:
        concurrency = 8 if args.concurrency is None else args.concurrency
        answers = _client(args, model).generate_many(inputs, args.max_new_tokens, concurrency,
                                                     do_sample=args.do_sample, seed=args.seed)
    else:
        answers = [generate(model, row, args.max_new_tokens, args.do_sample).tolist() for row in inputs]
    texts = [tokenizer.decode(answer, skip_special_tokens=True) for answer in answers]
    if len(documents) == 1:
        print(*texts, sep="")
    else:
        print("\n".join(json.dumps({"document": document, "text": text}) for document, text in zip(documents, texts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
