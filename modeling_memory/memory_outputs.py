"""Outputs of the memory model ([`MemoryModel`], [`MemoryForCausalLM`]) and the layout of its decoder inputs."""

from dataclasses import dataclass

import torch
from transformers import Cache, DynamicCache
from transformers.utils import ModelOutput


@dataclass
class MemoryModelOutput(ModelOutput):
    """Output of [`MemoryModel`].

    Args:
        last_hidden_state (`[batch, seq_len, d_dec]`): decoder hidden states of the token positions.
        memory_embeds (`[batch, n_mem, d_dec]`): the memories the decoder read (given ones first, then encoded).
        hidden_states (*optional*, with `output_hidden_states`): `num_hidden_layers + 1` states `[batch, seq_len,
            d_dec]`: the token embeddings the decoder's input is made of, then each decoder layer's states of the
            token positions (the memory slots are not included). An index or a list of indices as
            `output_hidden_states` keeps only those (the others are `None`), as in transformers.
        attentions (*optional*, with `output_attentions` and eager attention): `num_hidden_layers` decoder weights
            `[batch * num_chunks, heads, S + L, S + L]` each over every chunk's memory slots and tokens, row
            `r * num_chunks + g` holding chunk `g` of row `r` (chunks counted from each row's first real token).
    """

    last_hidden_state: torch.FloatTensor | None = None
    memory_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MemoryDecoderInputs:
    """How [`MemoryModel`] lays out an input for its decoder (rows rolled to start at their first real token).

    Args:
        token_ids / token_mask (`[b, k*L]`): rolled tokens and mask, padded to `k` whole chunks.
        shift (`[b]` or `None`): each row's roll (`None`: no row is left-padded); length: input `seq_len`.
        num_chunks: `k`. bank (`[b, >=S, d_dec]`): every row's memories, given ones first; counts (`[b]`): how
            many were given. memory_embeds (`[b, n_mem, d_dec]`): the memories read.
        embeds / mask / positions: the decoder's inputs `[b*k, S+L, d_dec]`, key mask `[b*k, S+L]` and positions
            (`[1 or b*k, S+L]`).
        token_embeds (`[b, seq_len, d_dec]`): the input's token embeddings in input order, from which `embeds` is
            assembled.
    """

    token_ids: torch.LongTensor
    token_mask: torch.Tensor
    shift: torch.LongTensor | None
    length: int
    num_chunks: int
    bank: torch.Tensor
    counts: torch.LongTensor
    memory_embeds: torch.Tensor
    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.LongTensor
    token_embeds: torch.Tensor


@dataclass
class MemoryDecodeOutput(ModelOutput):
    """Output of [`MemoryModel.decode`] (rolled order, see [`MemoryDecoderInputs`]).

    Args:
        last_hidden_state (`[batch, seq_len, d_dec]`, *optional*): decoder states of the token positions
            (`None` when the decoder was not run).
        memory_embeds (`[batch, n_mem, d_dec]`): the memories the decoder read.
        decoder_inputs ([`MemoryDecoderInputs`]): the decoder's inputs, from which a generation cache is built.
        hidden_states / attentions (*optional*): see [`MemoryModelOutput`] (hidden states in rolled order).
        decoder_cache (`DynamicCache`, *optional*): with `use_cache`, the decoder's keys/values of every chunk.
    """

    last_hidden_state: torch.FloatTensor | None = None
    memory_embeds: torch.FloatTensor | None = None
    decoder_inputs: MemoryDecoderInputs | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    decoder_cache: DynamicCache | None = None


@dataclass
class MemoryCausalLMOutput(ModelOutput):
    """Output of [`MemoryForCausalLM`].

    Args:
        loss (scalar, *optional*): returned when `labels` are given (see `MemoryConfig.loss_reduction`).
        logits (`[batch, seq_len, vocab]`, *optional*): aligned with `input_ids` (position `p` predicts token
            `p+1`); `None` in training mode with labels (the head then runs only on positions with targets).
        past_key_values (`MemoryCache`, *optional*): generation cache.
        memory_embeds (`[batch, n_mem, d_dec]`): the memories the decoder read.
        stream_losses (`[3]`, *optional*): with `stream_ids`: the unweighted (causal, copy, retrieval) parts of
            `loss`, detached, so that `loss = sum(<stream>_loss_weight * stream_losses[i])` over `LOSS_STREAMS`.
        hidden_states / attentions (*optional*): see [`MemoryModelOutput`]; for a cached step, the new tokens'
            states `[batch, q, d_dec]` and the new token's weights `[batch, heads, 1, cached columns]`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    memory_embeds: torch.FloatTensor | None = None
    stream_losses: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
