"""Benchmark model builders: a memory model, a full-context Llama and an RMT sharing one decoder's weights,
and the paper's sequential per-chunk algorithm (Badger §4.1-4.4) as the reference the batched model is timed
against. `sizes` is an `eval.benchmarks.Sizes` (vocabulary, widths, layers, heads, chunk size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from memory_models.configuration.presets import llama
from memory_models.modeling_memory import (
    MemoryConfig, MemoryForCausalLM, RecurrentMemoryConfig, RecurrentMemoryForCausalLM,
)


def llama_config(sizes, hidden: int, positions: int) -> LlamaConfig:
    """The benchmarks' small Llama (`configuration.presets.llama`) of `sizes`' depth, heads and vocabulary."""
    return llama(hidden, sizes.num_layers, sizes.num_heads, vocab_size=sizes.vocab_size, positions=positions)


def build_memory_model(sizes, context: int, paper: bool = True):
    """Memory model with `context / chunk_size` slots; `paper=True` uses within-chunk targets and paper loss."""
    slots = context // sizes.chunk_size
    config = MemoryConfig(
        encoder_config=llama_config(sizes, sizes.encoder_hidden, sizes.chunk_size),
        decoder_config=llama_config(sizes, sizes.decoder_hidden, slots + sizes.chunk_size),
        chunk_size=sizes.chunk_size, num_memory_slots=slots,
        paper_chunk_targets=paper, loss_reduction="paper" if paper else "token_mean",
    )
    return MemoryForCausalLM(config)


def llama_with_decoder_weights(memory_model, sizes, context: int) -> LlamaForCausalLM:
    """Full-context `LlamaForCausalLM` with the memory model's decoder config and weights."""
    llama = LlamaForCausalLM(llama_config(sizes, sizes.decoder_hidden, context))
    llama.load_state_dict(memory_model.decoder.state_dict())
    return llama


def rmt_with_decoder_weights(memory_model, sizes, context: int) -> RecurrentMemoryForCausalLM:
    """Recurrent memory transformer (1 memory token, append) whose decoder has the memory model's weights."""
    config = RecurrentMemoryConfig(
        llama_config(sizes, sizes.decoder_hidden, sizes.chunk_size + 2), chunk_size=sizes.chunk_size,
        max_segments=context // sizes.chunk_size, num_memory_tokens=1,
    )
    rmt = RecurrentMemoryForCausalLM(config)
    rmt.decoder.load_state_dict(memory_model.decoder.state_dict())
    return rmt


# ----------------------------------------------------------------------------- the paper's sequential algorithm
def _paper_memory(model, chunk_ids: torch.LongTensor) -> torch.Tensor:
    """Memory of one chunk `[b, L]` -> `[b, d_dec]` with the model's own encoder, bottleneck and projection."""
    hidden = model.encoder(input_ids=chunk_ids, use_cache=False).last_hidden_state  # (b, L, d_enc)
    memory = hidden[:, -1]
    if model.memory_compress is not None:
        memory = model.memory_expand(model.memory_compress(memory))
    if model.memory_projection is not None:
        memory = model.memory_projection(memory)
    return memory


def sequential_paper_loss(model, input_ids: torch.LongTensor) -> torch.Tensor:
    """The paper's reference forward (Badger §4.1-4.4): `s-1` encoder and `s` decoder calls of batch `b`.

    Fixed layout `[m_0 .. m_{c-1}, filler ..., tokens of chunk c]`, `lm_head` on every decoder position,
    within-chunk targets, per-chunk mean cross-entropy summed and divided by `s`. Built from the submodules of
    a `MemoryForCausalLM` (ones/zeros/learned filler, unpadded input whose length is a multiple of the chunk).
    """
    config = model.config
    chunk, slots = config.chunk_size, config.num_memory_slots
    batch, length = input_ids.shape
    num_chunks = length // chunk
    embed = model.get_input_embeddings()
    filler = model._filler(embed.weight.dtype, input_ids.device)
    memories, total = [], 0.0
    for c in range(num_chunks):
        ids = input_ids[:, c * chunk : (c + 1) * chunk]
        fill = filler.expand(batch, slots - len(memories), -1)
        inputs = torch.cat([*(m[:, None] for m in memories), fill, embed(ids)], dim=1)  # (b, S + L, d)
        hidden = model.decoder.model(inputs_embeds=inputs, use_cache=False).last_hidden_state
        logits = model.decoder.lm_head(hidden)  # every position, as the reference does
        predictions = logits[:, slots : slots + chunk - 1].flatten(0, 1).float()  # within-chunk targets only
        total = total + F.cross_entropy(predictions, ids[:, 1:].flatten())
        if c < num_chunks - 1:  # the last chunk's memory is never needed
            memories.append(_paper_memory(model, ids))
    return total / num_chunks

