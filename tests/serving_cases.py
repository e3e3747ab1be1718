"""Memory models, documents and banks for the serving tests (a stand-in server in the default suite, vLLM in the
`serving` ones).

vLLM's CPU attention needs heads of at least 32 dimensions: the decoders here are 64 wide with 2 heads. Greedy
choices of a freshly initialised model can be near ties, which different kernels may break differently; the
language-model head is scaled so that every choice is decisive (the tests guard the serving path, not float
ties), and the end-of-sequence row is zeroed so that generations run across several chunk boundaries.
"""

from pathlib import Path

import datasets
import torch

from cases_memory import VOCAB, memory_config, randomize_positions, word_tokenizer, words
from memory_models.configuration import get_preset
from memory_models.eval.banks.encode import encode_bank
from memory_models.modeling_memory import MemoryForCausalLM

KINDS = {  # name -> MemoryConfig overrides of cases_memory.memory_config (rolling window: any length)
    "fixed-ones": dict(filler="ones"),
    "variable-learned-positions": dict(memory_layout="variable", filler="learned", position_embedding="learned"),
}
DOCUMENT_LENGTHS = (3, 9, 14, 21)  # in quarter chunks: 0 to 5 memories, and a tail (chunk 4: 0 to 5 + 1 to 3 tokens)
PROMPT = [7, 8]


def decisive(model):
    """Scale the head (decisive greedy choices), zero the end-of-sequence row, fill learned positions at random."""
    with torch.no_grad():
        model.decoder.lm_head.weight.mul_(30)
        model.decoder.lm_head.weight[model.config.eos_token_id] = 0
        if isinstance(model.filler, torch.nn.Parameter):
            torch.nn.init.normal_(model.filler, std=1.0)
    return randomize_positions(model).eval()


def build(kind: str, seed: int = 0) -> MemoryForCausalLM:
    """A tiny memory model of `kind` (`KINDS`, or "small": the memory-transformer-small preset)."""
    torch.manual_seed(seed)
    if kind == "small":
        return decisive(MemoryForCausalLM(get_preset("memory-transformer-small", memory_window="rolling")))
    return decisive(MemoryForCausalLM(memory_config(decoder_hidden=64, memory_window="rolling", **KINDS[kind])))


def new_tokens(model) -> int:
    """Tokens to generate: three and a half chunks, so that every answer crosses at least three chunk boundaries."""
    return model.config.chunk_size * 7 // 2


def documents(model) -> list[list[int]]:
    """Four documents of the word tokenizer's tokens, of `DOCUMENT_LENGTHS` quarter chunks."""
    generator = torch.Generator().manual_seed(3)
    quarter = model.config.chunk_size // 4
    return [torch.randint(3, VOCAB, (n * quarter,), generator=generator).tolist() for n in DOCUMENT_LENGTHS]


def save_with_bank(root: Path, model) -> dict:
    """`root/model` (model and word tokenizer) and `root/bank` (the documents `doc-0` ...); returns the paths."""
    tokenizer = word_tokenizer(vocab_size=model.config.vocab_size)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    texts = [words(doc) for doc in documents(model)]
    corpus = datasets.Dataset.from_dict({"id": [f"doc-{i}" for i in range(len(texts))], "text": texts})
    encode_bank(model, tokenizer, corpus, root / "bank", show_progress=False)
    return {"model": root / "model", "bank": root / "bank", "tokenizer": tokenizer}


def document_inputs(model, doc: list[int], prompt=PROMPT) -> dict:
    """What a bank gives for `doc + prompt`: the memories of its complete chunks, its tail and the prompt."""
    chunk = model.config.chunk_size
    complete = len(doc) // chunk * chunk
    inputs = {"input_ids": torch.tensor([doc[complete:] + list(prompt)])}
    if complete:
        with torch.no_grad():
            inputs["memory_embeds"] = model.encode(torch.tensor([doc[:complete]]))
    return inputs
