"""Parallel encoder-decoder memory model (Badger, "Language Model Memory and Memory Models for Language", §4-5).

The input is cut into chunks of `L = chunk_size` tokens. The encoder turns every complete chunk into one
embedding (a memory); the decoder reads chunk `g` with the memories `m_0 .. m_{g-1}` of the preceding chunks in
`S = num_memory_slots` slots in front of its tokens. All chunks are encoded in ONE encoder call
(`[b*(k-1), L]`) and decoded in ONE decoder call (`[b*k, S+L, d]`), which is exactly equivalent to the paper's
sequential loop over chunks (spec §4.11).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Cache, LlamaForCausalLM, LlamaModel, PreTrainedModel
from transformers.utils import ModelOutput

from .auto_map import AutoMapMixin
from .configuration_memory import MemoryConfig
from .input_checks import check_embeds, check_inputs, check_matches, check_token_ids
from .memory_generation import MemoryCache, MemoryGenerationMixin
from .native_decoders import attach_pretrained_decoder, build_native_decoder
from .modeling_masked_mixer import (
    MaskedMixerForCausalLM,
    MaskedMixerModel,
    MaskedTokenMixing,
    MultiHeadTokenMixing,
)
from .sequence_ops import IGNORE_INDEX, left_pad_shift, roll_rows, row_gather, row_lengths



@dataclass
class MemoryModelOutput(ModelOutput):
    """Output of [`MemoryModel`].

    Args:
        last_hidden_state (`[batch, seq_len, d_dec]`): decoder hidden states of the token positions.
        memory_embeds (`[batch, n_mem, d_dec]`): the memories the decoder read (given ones first, then encoded).
        past_key_values (`MemoryCache`, *optional*): generation cache.
    """

    last_hidden_state: torch.FloatTensor | None = None
    memory_embeds: torch.FloatTensor | None = None
    past_key_values: Cache | None = None


@dataclass
class MemoryCausalLMOutput(ModelOutput):
    """Output of [`MemoryForCausalLM`].

    Args:
        loss (scalar, *optional*): returned when `labels` are given (see `MemoryConfig.loss_reduction`).
        logits (`[batch, seq_len, vocab]`, *optional*): aligned with `input_ids` (position `p` predicts token
            `p+1`); `None` in training mode with labels (the head then runs only on positions with targets).
        past_key_values (`MemoryCache`, *optional*): generation cache.
        memory_embeds (`[batch, n_mem, d_dec]`): the memories the decoder read.
        stream_losses (`[2]`, *optional*): with `stream_ids`: the unweighted (causal, copy) parts of `loss`, detached,
            so that `loss = clm_loss_weight * stream_losses[0] + copy_loss_weight * stream_losses[1]`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    memory_embeds: torch.FloatTensor | None = None
    stream_losses: torch.FloatTensor | None = None


def _build_sub_model(config, causal_lm: bool):
    if config.model_type == "masked_mixer":
        return MaskedMixerForCausalLM(config) if causal_lm else MaskedMixerModel(config)
    if config.model_type != "llama" and causal_lm:
        return build_native_decoder(config)  # Qwen, Mistral, Gemma, ... (checked: inputs_embeds, positions, mask)
    return LlamaForCausalLM(config) if causal_lm else LlamaModel(config)


LOSS_BLOCK_ROWS = 1024  # rows of the [targets, vocab] cross-entropy computed at a time


class MemoryPreTrainedModel(AutoMapMixin, PreTrainedModel):
    config_class = MemoryConfig
    _auto_map_classes = {"AutoModel": "MemoryModel", "AutoModelForCausalLM": "MemoryForCausalLM"}
    base_model_prefix = "memory_model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # No `_no_split_modules` here: transformers gathers it from the sub-models actually built (e.g. only
    # LlamaDecoderLayer for a Llama encoder and decoder), which is what FSDP wrapping and device_map need.
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module):
        # Sub-models (encoder, decoder) are dispatched to their own `_init_weights` by `initialize_weights`;
        # this covers our own layers, and the same module kinds if they ever sit directly in this model.
        super()._init_weights(module)  # Linear, Embedding, RMSNorm/LayerNorm, rotary `inv_freq` buffers
        if isinstance(module, (MaskedTokenMixing, MultiHeadTokenMixing)):
            module.reset_parameters()
        if isinstance(module, MemoryModel) and isinstance(module.filler, nn.Parameter):
            nn.init.normal_(module.filler, mean=0.0, std=self.config.initializer_range)


class MemoryModel(MemoryPreTrainedModel):
    """Memory model returning the decoder's hidden states of the token positions (no language-model head).

    It has the same modules (and state-dict keys) as [`MemoryForCausalLM`], so either class loads the other's
    checkpoints; `decoder.lm_head` is unused here.
    """

    def __init__(self, config: MemoryConfig):
        super().__init__(config)
        d_dec = config.decoder_config.hidden_size
        self.encoder = None
        self.memory_compress = self.memory_expand = self.memory_projection = None
        if config.encoder_config is not None and not config.no_memory:
            self.encoder = _build_sub_model(config.encoder_config, causal_lm=False)
            d_enc = config.encoder_config.hidden_size
            if config.compression > 1:
                self.memory_compress = nn.Linear(d_enc, d_enc // config.compression)
                self.memory_expand = nn.Linear(d_enc // config.compression, d_enc)
            if d_enc != d_dec:
                self.memory_projection = nn.Linear(d_enc, d_dec)
        self.filler = nn.Parameter(torch.zeros(d_dec)) if config.filler == "learned" else None
        self.decoder = _build_sub_model(config.decoder_config, causal_lm=True)
        self.post_init()
        self._freeze_encoder()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Loading rebuilds parameters from the checkpoint and drops `requires_grad=False`: freeze again.
        loaded = super().from_pretrained(*args, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded)._freeze_encoder()  # tuple: output_loading_info=True
        return loaded

    @classmethod
    def from_pretrained_decoder(cls, decoder, encoder=None, encoder_config=None, dtype="auto", **config_kwargs):
        """A memory model whose decoder is a pretrained causal LM (paper §5.4, Fig. S6; e.g. Llama-3.2-1B).

        Args:
            decoder (`str`, `os.PathLike` or `PreTrainedModel`): a native decoder-only causal LM or its folder /
                Hub id (loaded in `dtype`, by default the checkpoint's, with transformers' low-memory loading).
            encoder (`nn.Module`, *optional*): a (trained) encoder to use as is; its config must match
                `encoder_config`, which defaults to `encoder.config`.
            encoder_config (`PretrainedConfig`, *optional*): encoder of a fresh, randomly initialised encoder.
            dtype: dtype of a decoder loaded from a folder (`"auto"`: the checkpoint's).
            **config_kwargs: other `MemoryConfig` fields (`chunk_size`, `num_memory_slots`, `filler`, ...).
        Returns:
            the memory model; no random decoder is materialised (built on the meta device, then attached).
        """
        if not isinstance(decoder, nn.Module):
            from transformers import AutoModelForCausalLM

            decoder = AutoModelForCausalLM.from_pretrained(decoder, dtype=dtype)
        if encoder_config is None and encoder is not None:
            encoder_config = encoder.config
        config = cls.config_class(encoder_config=encoder_config, decoder_config=decoder.config, **config_kwargs)
        return attach_pretrained_decoder(cls, decoder, config, encoder)

    def _freeze_encoder(self):
        """`freeze_encoder`: no encoder parameter trains; `fresh_encoder_embedding`: only its embedding does."""
        encoder = getattr(self, "encoder", None)
        if encoder is None or not (self.config.freeze_encoder or self.config.fresh_encoder_embedding):
            return
        encoder.requires_grad_(False)
        if self.config.fresh_encoder_embedding:
            encoder.get_input_embeddings().requires_grad_(True)
        encoder.eval()

    def train(self, mode: bool = True):
        """Like `nn.Module.train`, but a frozen encoder always stays in eval mode: no dropout, so its memories are
        the ones it gives on its own (e.g. inside the autoencoder it was trained in)."""
        super().train(mode)
        if getattr(self, "encoder", None) is not None and self.config.freeze_encoder:
            self.encoder.eval()
        return self

    def get_input_embeddings(self):
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.decoder.set_input_embeddings(value)

    # ------------------------------------------------------------------ encoder side
    def _encode_chunks(self, chunk_ids: torch.LongTensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """Memories of `[n, L]` chunks: pooled encoder state, optional bottleneck and projection -> `[n, d_dec]`."""
        config = self.config
        frozen = config.freeze_encoder and not config.fresh_encoder_embedding
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if config.encoder_config.model_type == "masked_mixer":
                hidden = self.encoder(input_ids=chunk_ids).last_hidden_state  # mixers read pads as tokens
            else:
                hidden = self.encoder(input_ids=chunk_ids, attention_mask=chunk_mask, use_cache=False).last_hidden_state
        # hidden: (n, L, d_enc)
        if config.pooling == "last":
            memory = hidden[:, -1]
        elif config.pooling == "penultimate":
            memory = hidden[:, -2]
        else:  # last_nonpad; all-pad chunks fall back to the last position
            length = chunk_mask.shape[1]
            last = length - 1 - chunk_mask.flip(1).long().argmax(1)
            last = torch.where(chunk_mask.any(1), last, length - 1)
            memory = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.memory_compress is not None:
            memory = self.memory_expand(self.memory_compress(memory))
        if self.memory_projection is not None:
            memory = self.memory_projection(memory)
        return memory  # (n, d_dec)

    def encode(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        return_attention_mask: bool = False,
    ):
        """Memories of the complete chunks of `input_ids`, ready to be passed as `memory_embeds=`.

        A row's chunks start at its first real token (left padding is rolled away, as in `forward`); trailing
        tokens that do not fill a chunk are not encoded. Rows with different numbers of complete chunks give
        left-padded memories and need `return_attention_mask=True` (pass the mask as `memory_attention_mask`).

        Args:
            input_ids (`[batch, seq_len]`), attention_mask (`[batch, seq_len]`, *optional*).
        Returns:
            memory_embeds `[batch, n, d_dec]` with `n = seq_len // chunk_size` for unpadded input, and, if
            `return_attention_mask`, the memory mask `[batch, n]` (1 = real memory).
        """
        if self.encoder is None:
            raise ValueError("this memory model has no encoder (encoder_config is None or no_memory=True)")
        check_inputs(self.get_input_embeddings().num_embeddings, 0, input_ids, attention_mask)
        batch, length = input_ids.shape
        if length == 0:
            raise ValueError("encode() got an input without tokens (seq_len 0)")
        chunk = self.config.chunk_size
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        shift = left_pad_shift(mask)
        ids, mask = roll_rows(input_ids, shift), roll_rows(mask, shift)
        n = length // chunk
        if n == 0:
            empty = self.get_input_embeddings().weight.new_zeros(batch, 0, self.config.decoder_config.hidden_size)
            return (empty, mask.new_zeros(batch, 0, dtype=torch.long)) if return_attention_mask else empty
        memories = self._encode_chunks(ids[:, : n * chunk].reshape(-1, chunk), mask[:, : n * chunk].reshape(-1, chunk))
        memories = memories.view(batch, n, -1)  # (b, n, d_dec)
        counts = torch.div(row_lengths(mask), chunk, rounding_mode="floor").clamp(max=n)  # complete chunks per row
        memory_mask = torch.arange(n, device=ids.device)[None] >= (n - counts)[:, None]  # right-aligned
        if bool(memory_mask.all()):
            return (memories, memory_mask.long()) if return_attention_mask else memories
        if not return_attention_mask:
            raise ValueError(
                f"the rows have different numbers of complete chunks ({counts.tolist()}): call encode(..., "
                "return_attention_mask=True) and pass the mask as memory_attention_mask"
            )
        index = (torch.arange(n, device=ids.device)[None] - (n - counts)[:, None]).clamp(min=0)  # left-pad rows
        memories = row_gather(memories, index) * memory_mask[..., None]
        return memories, memory_mask.long()

    def _memory_bank(self, ids, mask, num_chunks, memory_embeds, memory_attention_mask):
        """All memories per row, front-aligned: given ones, then those of chunks `0..k-2`.

        Returns:
            bank `[b, max(S, n), d_dec]`, counts `[b]` (number of given memories per row), n_used (int).
        """
        config, batch = self.config, ids.shape[0]
        d_dec = config.decoder_config.hidden_size
        dtype = self.get_input_embeddings().weight.dtype
        if memory_embeds is None:
            memory_embeds = ids.new_zeros(batch, 0, d_dec, dtype=dtype)
        given = memory_embeds.shape[1]
        counts = torch.full((batch,), given, dtype=torch.long, device=ids.device)
        memory_embeds = memory_embeds.to(dtype)
        if memory_attention_mask is not None:
            keep = memory_attention_mask.bool()
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # real memories first
            memory_embeds = row_gather(memory_embeds * keep[..., None], order)
            counts = keep.sum(1)
        encoded = num_chunks - 1 if self.encoder is not None and not config.no_memory else 0
        if num_chunks > 1 and encoded == 0 and not config.no_memory:
            raise ValueError(
                f"input of {num_chunks} chunks needs an encoder, but this model has none: pass at most "
                f"chunk_size={config.chunk_size} tokens per call, or set no_memory=True"
            )
        width = max(config.num_memory_slots, given + encoded)
        bank = memory_embeds.new_zeros(batch, width, d_dec)
        bank[:, :given] = memory_embeds
        if encoded:
            chunk = config.chunk_size
            ids_c = ids[:, : encoded * chunk].reshape(-1, chunk)  # (b*(k-1), L)
            mask_c = mask[:, : encoded * chunk].reshape(-1, chunk)
            new = self._encode_chunks(ids_c, mask_c).view(batch, encoded, d_dec).to(dtype)
            slots = counts[:, None] + torch.arange(encoded, device=ids.device)[None]  # (b, k-1)
            bank = bank.scatter(1, slots[..., None].expand(-1, -1, d_dec), new)
        return bank, counts, given + encoded

    # ------------------------------------------------------------------ decoder side
    def _filler(self, dtype, device) -> torch.Tensor:
        d_dec = self.config.decoder_config.hidden_size
        if self.config.filler == "learned":
            return self.filler.to(dtype)
        if self.config.filler == "ones":
            return torch.ones(d_dec, dtype=dtype, device=device)
        return torch.zeros(d_dec, dtype=dtype, device=device)  # zeros, or masked (content never read)

    def memory_window(self, chunk_index: torch.LongTensor):
        """Which memories chunk `g` reads: `m_first .. m_{first+count-1}` in slots `0 .. count-1`.

        Bounded window: all `g` preceding memories (`g <= S-1` on any input that fits). Rolling window: the
        `S-1` most recent ones once `g >= S-1`, so the last slot holds the filler as in training.
        Returns `first` and `count`, both shaped like `chunk_index`.
        """
        count = chunk_index
        if self.config.memory_window == "rolling":
            count = chunk_index.clamp(max=self.config.num_memory_slots - 1)
        if self.config.no_memory:
            count = torch.zeros_like(chunk_index)
        return chunk_index - count, count

    def slot_inputs(self, bank: torch.Tensor, first: torch.LongTensor, count: torch.LongTensor):
        """Memory-slot embeddings, mask and positions for decoder rows that read `count` memories from `first` on.

        Args:
            bank (`[b, >=S, d]`): front-aligned memories; first, count (`[b, k]`): column in `bank` of the oldest
                memory each chunk reads, and how many it reads (see `memory_window`).
        Returns:
            slots `[b, k, S, d]`, slot_mask `[b, k, S]` (bool), slot_positions `[S]`.
        """
        config = self.config
        slots_n = config.num_memory_slots
        j = torch.arange(slots_n, device=bank.device)
        select = j[None, None] < count[..., None]  # (b, k, S): slot j holds memory first + j iff j < count
        columns = (first[..., None] + j).clamp(max=bank.shape[1] - 1).flatten(1)  # (b, k*S)
        memories = row_gather(bank, columns).view(*select.shape, -1)  # (b, k, S, d)
        filler = self._filler(bank.dtype, bank.device)
        slots = torch.where(select[..., None], memories, filler)  # (b, k, S, d)
        if config.memory_layout == "variable" or config.filler == "masked":
            slot_mask = select
        else:
            slot_mask = torch.ones_like(select)
        return slots, slot_mask, j

    def token_positions(self, num_memories: torch.LongTensor, offsets: torch.LongTensor) -> torch.LongTensor:
        """Decoder position of token `offsets` of a chunk: `S + i` (fixed layout) or `g + i` (variable)."""
        if self.config.memory_layout == "variable":
            return num_memories + offsets
        return self.config.num_memory_slots + offsets

    def run_decoder(self, embeds, mask, positions, past_key_values=None, use_cache=False) -> torch.Tensor:
        """Decoder body on `[n, len, d]` embeddings with a `[n, len]` key mask and `[n or 1, len]` positions."""
        if self.config.decoder_config.model_type == "masked_mixer":
            return self.decoder.model(inputs_embeds=embeds).last_hidden_state  # fixed layout, no mask
        return self.decoder.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past_key_values,
            use_cache=use_cache,
        ).last_hidden_state

    def _chunk_decoder_inputs(self, tokens, token_mask, bank, counts):
        """Decoder inputs for all chunks: `[b*k, S+L, d]` embeddings, `[b*k, S+L]` mask and positions."""
        config = self.config
        batch, num_chunks, chunk, d_dec = tokens.shape
        chunk_index = torch.arange(num_chunks, device=tokens.device)
        first, num_memories = self.memory_window(counts[:, None] + chunk_index[None])  # (b, k); g = counts + index
        slots, slot_mask, slot_positions = self.slot_inputs(bank, first, num_memories)
        embeds = torch.cat([slots, tokens], dim=2).view(batch * num_chunks, -1, d_dec)  # (b*k, S+L, d)
        mask = torch.cat([slot_mask, token_mask], dim=2).view(batch * num_chunks, -1)  # (b*k, S+L)
        offsets = torch.arange(chunk, device=tokens.device)
        if config.memory_layout == "variable":
            token_pos = self.token_positions(num_memories[..., None], offsets)  # (b, k, L)
            slot_pos = slot_positions.expand(batch, num_chunks, -1)
            positions = torch.cat([slot_pos, token_pos], dim=2).view(batch * num_chunks, -1)
        else:
            positions = torch.cat([slot_positions, self.token_positions(None, offsets)])[None]  # (1, S+L)
        return embeds, mask, positions, num_memories

    def _check_inputs(self, input_ids, inputs_embeds, memory_embeds, memory_attention_mask):
        config = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if length == 0:
            raise ValueError("the input has no tokens (seq_len 0)")
        given = 0
        if memory_embeds is not None:
            d_dec = config.decoder_config.hidden_size
            if memory_embeds.ndim != 3 or memory_embeds.shape[-1] != d_dec:
                raise ValueError(
                    f"memory_embeds must be [batch, n_memories, {d_dec}] (decoder width), got {tuple(memory_embeds.shape)}"
                )
            given = memory_embeds.shape[1]
            if given > config.num_memory_slots and config.memory_window == "bounded":
                raise ValueError(
                    f"{given} memories given, but the decoder has only num_memory_slots={config.num_memory_slots}"
                )
        if memory_attention_mask is not None and (memory_embeds is None or memory_attention_mask.shape != memory_embeds.shape[:2]):
            raise ValueError("memory_attention_mask needs memory_embeds and must be [batch, n_memories]: got "
                             f"{tuple(memory_attention_mask.shape)} for memory_embeds "
                             f"{None if memory_embeds is None else tuple(memory_embeds.shape)}")
        num_chunks = -(-length // config.chunk_size)
        if given + num_chunks > config.num_memory_slots and config.memory_window == "bounded":
            raise ValueError(
                f"{length} tokens after {given} memories need {given} + {num_chunks} chunks of {config.chunk_size}, "
                f"but the model holds {config.num_memory_slots} chunks: max_position_embeddings="
                f"{config.max_position_embeddings} tokens in total (memory_window='rolling' reads any length)"
            )
        return num_chunks

    def _check_values(self, input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask):
        """Token range, exact batch sizes (no broadcasting), finite floating-point memories."""
        d_dec = self.config.decoder_config.hidden_size
        batch, _ = check_inputs(self.get_input_embeddings().num_embeddings, d_dec, input_ids, attention_mask,
                                inputs_embeds)
        if memory_embeds is not None:
            check_embeds("memory_embeds", memory_embeds, d_dec, batch)
            check_matches("memory_attention_mask", memory_attention_mask, memory_embeds.shape[:2],
                          "memory_embeds [batch, n_memories]")

    def decode(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        memory_embeds=None,
        memory_attention_mask=None,
        return_decoder_inputs: bool = False,
        run_decoder: bool = True,
    ):
        """Shared forward body. Returns hidden `[b, T, d]` in ROLLED order (`None` if not `run_decoder`), the
        row shift, memories used, and (if asked) the chunked decoder inputs for building a generation cache."""
        config = self.config
        num_chunks = self._check_inputs(input_ids, inputs_embeds, memory_embeds, memory_attention_mask)
        self._check_values(input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask)
        reference = input_ids if input_ids is not None else inputs_embeds
        batch, length = reference.shape[:2]
        device = reference.device
        mask = torch.ones(batch, length, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
        shift = left_pad_shift(mask)
        mask = roll_rows(mask, shift)
        if input_ids is not None:
            ids = roll_rows(input_ids, shift)
            tokens = self.get_input_embeddings()(ids)
        else:
            if num_chunks > 1 and self.encoder is not None and not config.no_memory:
                raise ValueError(
                    f"inputs_embeds cover {num_chunks} chunks, but the memory encoder reads token ids: pass input_ids"
                )
            ids, tokens = None, roll_rows(inputs_embeds, shift)
        chunk, padded = config.chunk_size, num_chunks * config.chunk_size
        pad = padded - length
        mask = F.pad(mask, (0, pad), value=False)
        if ids is not None:
            ids = F.pad(ids, (0, pad), value=config.pad_token_id or 0)
        tokens = F.pad(tokens, (0, 0, 0, pad))
        if ids is None:
            ids = torch.zeros(batch, padded, dtype=torch.long, device=device)  # never encoded (one chunk)
        bank, counts, n_used = self._memory_bank(ids, mask, num_chunks, memory_embeds, memory_attention_mask)
        embeds, dec_mask, positions, num_memories = self._chunk_decoder_inputs(
            tokens.view(batch, num_chunks, chunk, -1), mask.view(batch, num_chunks, chunk), bank, counts
        )
        hidden = None
        if run_decoder:
            hidden = self.run_decoder(embeds, dec_mask, positions)  # (b*k, S+L, d)
            hidden = hidden[:, config.num_memory_slots :].reshape(batch, padded, -1)[:, :length]  # (b, T, d)
        memories = bank[:, :n_used] if not config.no_memory else bank[:, :0]
        extras = None
        if return_decoder_inputs:
            extras = dict(ids=ids, mask=mask, bank=bank, counts=counts, embeds=embeds, dec_mask=dec_mask,
                          positions=positions, num_memories=num_memories, num_chunks=num_chunks)
        return hidden, shift, memories, extras

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        memory_embeds: torch.FloatTensor | None = None,
        memory_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> MemoryModelOutput:
        """
        Args:
            input_ids (`[batch, seq_len]`): tokens; with the bounded memory window, `seq_len` plus the given
                memories' chunks must fit `max_position_embeddings`; with the rolling window, any length.
            attention_mask (`[batch, seq_len]`, *optional*): 1 = real token. Left and right padding are allowed.
            inputs_embeds (`[batch, seq_len, d_dec]`, *optional*): decoder token embeddings instead of ids
                (only for inputs that need no encoding: at most one chunk, or no encoder).
            memory_embeds (`[batch, n_mem, d_dec]`, *optional*): memories of chunks preceding the input
                (e.g. from `encode`).
            memory_attention_mask (`[batch, n_mem]`, *optional*): 1 = real memory (left-padded memories).
        Returns:
            `MemoryModelOutput` with `last_hidden_state` `[batch, seq_len, d_dec]` and `memory_embeds`.
        """
        hidden, shift, memories, _ = self.decode(
            input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask
        )
        return MemoryModelOutput(last_hidden_state=roll_rows(hidden, shift, inverse=True), memory_embeds=memories)


def shifted_targets(labels: torch.LongTensor, chunk_size: int, paper_chunk_targets: bool) -> torch.LongTensor:
    """`targets[:, p] = labels[:, p+1]` (last position: none); paper mode drops targets that start a chunk."""
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    if paper_chunk_targets:
        starts = (torch.arange(labels.shape[1], device=labels.device) + 1) % chunk_size == 0  # p+1 starts a chunk
        targets = targets.masked_fill(starts[None], IGNORE_INDEX)
    return targets


class MemoryForCausalLM(MemoryModel, MemoryGenerationMixin):
    """Memory model with the decoder's language-modelling head: logits `[batch, seq_len, vocab]` aligned with
    `input_ids`, the paper's losses, and `generate()` with a chunk-aware KV cache (`MemoryCache`)."""

    accepts_loss_kwargs = True  # the loss honours `num_items_in_batch` (Trainer: no extra scaling)

    def get_output_embeddings(self):
        return self.decoder.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.decoder.set_output_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        memory_embeds: torch.FloatTensor | None = None,
        memory_attention_mask: torch.Tensor | None = None,
        stream_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs,
    ) -> MemoryCausalLMOutput:
        """
        Args:
            input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask: see [`MemoryModel`].
            labels (`[batch, seq_len]`, *optional*): targets aligned with `input_ids` (shifted inside); -100 ignored.
            stream_ids (`[batch]`, *optional*): 0 = causal row, 1 = copy row (combined objective); weights the
                streams' losses with `clm_loss_weight` / `copy_loss_weight`.
            past_key_values (`MemoryCache`, *optional*): generation cache; once filled, `input_ids` holds only the
                new tokens. `use_cache=True` without a cache starts one.
            logits_to_keep (`int`): if > 0, only the last `logits_to_keep` positions get logits.
            num_items_in_batch (`int` or `Tensor`, *optional*): target counts of the whole optimizer step (all
                gradient-accumulation micro-batches and processes; passed by the `Trainer`): a scalar total, or
                per loss group as from `loss_target_counts`. The loss then sums this batch's cross-entropy over
                those counts, so that the step's loss and gradient do not depend on how its batch is split.
        Returns:
            `MemoryCausalLMOutput` (loss, logits `[batch, seq_len, vocab]`, past_key_values, memory_embeds,
            stream_losses).
        """
        if isinstance(past_key_values, MemoryCache) and past_key_values.is_filled:
            logits = self.cached_step(input_ids, past_key_values)
            return MemoryCausalLMOutput(logits=logits, past_key_values=past_key_values)
        if labels is not None:
            reference = input_ids if input_ids is not None else inputs_embeds
            check_matches("labels", labels, reference.shape[:2] if reference is not None else labels.shape)
            check_token_ids("labels", labels, self.config.vocab_size, allow_ignore=True)
        want_cache = isinstance(past_key_values, MemoryCache) or (use_cache is True and past_key_values is None)
        want_cache = want_cache and input_ids is not None and self.config.decoder_config.model_type != "masked_mixer"
        if want_cache and labels is None and logits_to_keep == 1 and self._ends_on_real_tokens(attention_mask):
            # Prefill for generate(): the first new token needs only the memories of the complete chunks and
            # ONE decoder pass over each row's last chunk (the pass that fills the cache), not all chunks.
            _, shift, memories, extras = self.decode(input_ids, attention_mask, None, memory_embeds,
                                                     memory_attention_mask, return_decoder_inputs=True, run_decoder=False)
            past_key_values, last_hidden = self.fill_cache(past_key_values, extras, input_ids.shape[1])
            logits = self.decoder.lm_head(last_hidden[:, None])  # (b, 1, V)
            return MemoryCausalLMOutput(logits=logits, past_key_values=past_key_values, memory_embeds=memories)
        hidden, shift, memories, extras = self.decode(
            input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask, return_decoder_inputs=want_cache
        )
        if want_cache:
            past_key_values, _ = self.fill_cache(past_key_values, extras, input_ids.shape[1])
        loss = logits = stream_losses = None
        if labels is not None:
            targets = shifted_targets(
                roll_rows(labels, shift), self.config.chunk_size, self.config.paper_chunk_targets
            )
            loss, logits, stream_losses = self._loss(hidden, targets, stream_ids, num_items_in_batch)
        if logits is None and not (self.training and labels is not None):
            hidden = roll_rows(hidden, shift, inverse=True)
            logits = self.decoder.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        elif logits is not None:
            logits = roll_rows(logits, shift, inverse=True)
            logits = logits[:, -logits_to_keep:] if logits_to_keep else logits
        return MemoryCausalLMOutput(
            loss=loss, logits=logits, past_key_values=past_key_values if want_cache else None, memory_embeds=memories,
            stream_losses=stream_losses,
        )

    @staticmethod
    def _ends_on_real_tokens(attention_mask) -> bool:
        """True if every row's last position is a real token (no right padding), as in `generate`'s inputs."""
        return attention_mask is None or bool(attention_mask[:, -1].bool().all())

    def loss_target_counts(self, labels, attention_mask=None, stream_ids=None) -> torch.LongTensor:
        """Targets per loss group of a batch (`[groups]`): streams (causal, copy), and chunks under `paper`
        reduction. Summed over a step's micro-batches and processes, they are the `num_items_in_batch` that
        makes the step's loss the same token mean (per group) however the batch is split."""
        mask = torch.ones_like(labels, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        targets = shifted_targets(
            roll_rows(labels, left_pad_shift(mask)), self.config.chunk_size, self.config.paper_chunk_targets
        )
        group, num_groups, _, _ = self._loss_groups(targets, stream_ids)
        return torch.zeros(num_groups, dtype=torch.long, device=group.device).index_add(0, group, torch.ones_like(group))

    def _loss_groups(self, targets, stream_ids):
        """Group index of every valid target (row-major order), the number of groups, the stream weights and the
        divisor (chunks under `paper` reduction, else 1)."""
        config = self.config
        batch, length = targets.shape
        rows, positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
        weights = torch.ones(1, device=targets.device)
        group = torch.zeros_like(rows)
        if stream_ids is not None:
            stream_ids = stream_ids.to(rows.device).long()
            if stream_ids.shape != (batch,) or bool(((stream_ids < 0) | (stream_ids > 1)).any()):
                raise ValueError(f"stream_ids must be [batch={batch}] with values 0 (causal) or 1 (copy), got {stream_ids.tolist()}")
            group = stream_ids[rows]
            weights = torch.tensor([config.clm_loss_weight, config.copy_loss_weight], device=targets.device)
        divisor = 1
        if config.loss_reduction == "paper":
            divisor = -(-length // config.chunk_size)  # chunks, by prediction position
            group = group * divisor + torch.div(positions, config.chunk_size, rounding_mode="floor")
        return group, weights.numel() * divisor, weights, divisor

    def _loss(self, hidden, targets, stream_ids, num_items_in_batch=None):
        """Loss over valid targets (see `MemoryConfig.loss_reduction`); also the full logits outside training.

        Returns:
            loss (scalar), logits `[b, T, V]` in rolled order (`None` in training mode), and the unweighted
            per-stream parts of the loss `[2]` (detached; `None` without `stream_ids`).
        """
        valid = targets != IGNORE_INDEX  # (b, T)
        logits = None
        if self.training:  # head only where there are targets
            head_inputs, head = hidden[valid], self.decoder.lm_head  # (N, d)
        else:
            logits = self.decoder.lm_head(hidden)
            head_inputs, head = logits[valid], torch.nn.Identity()  # (N, V)
        # Cross-entropy in blocks of rows: the fp32 log-softmax of a [N, V] block stays cache-sized (about 1.6x
        # faster under bf16 autocast on CPU than one [N, V] call) and the float copy of the logits stays small.
        ce = torch.cat([
            F.cross_entropy(head(rows).float(), row_targets, reduction="none")
            for rows, row_targets in zip(head_inputs.split(LOSS_BLOCK_ROWS), targets[valid].split(LOSS_BLOCK_ROWS))
        ])  # (N,); an empty batch of targets still gives a (zero) loss with a grad_fn
        group, num_groups, weights, divisor = self._loss_groups(targets, stream_ids)
        sums = ce.new_zeros(num_groups).index_add(0, group, ce)
        counts = torch.zeros(num_groups, device=ce.device).index_add(0, group, torch.ones_like(ce))
        means = group_means(sums, counts, num_items_in_batch)  # empty groups give 0
        per_stream = means.view(weights.numel(), -1).sum(1) / divisor  # (streams,)
        loss = (weights * per_stream).sum()
        return loss, logits, per_stream.detach() if stream_ids is not None else None


def group_means(sums: torch.Tensor, counts: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """`sums / counts` per loss group, or the batch's share of a whole step's means given the step's counts
    `num_items_in_batch` (per group; or a scalar total, which weights this batch by its share of all targets)."""
    if num_items_in_batch is None:
        return sums / counts.clamp(min=1)
    total = torch.as_tensor(num_items_in_batch, dtype=sums.dtype, device=sums.device).reshape(-1)
    if total.numel() == sums.numel():
        return sums / total.clamp(min=1)
    if total.numel() == 1:
        return sums / counts.clamp(min=1) * (counts.sum() / total.clamp(min=1))
    raise ValueError(f"num_items_in_batch must be a scalar or have one count per loss group ({sums.numel()}), "
                     f"got shape {tuple(total.shape)}")
