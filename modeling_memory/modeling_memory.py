"""Parallel encoder-decoder memory model (Badger 2026, "Language Model Memory and Memory Models for Language").

The input is cut into chunks of `L = chunk_size` tokens. The encoder turns every complete chunk into one
embedding (a memory); the decoder reads chunk `g` with the memories `m_0 .. m_{g-1}` of the preceding chunks in
`S = num_memory_slots` slots in front of its tokens. All chunks are encoded in ONE encoder call
(`[b*(k-1), L]`) and decoded in ONE decoder call (`[b*k, S+L, d]`), which is exactly equivalent to the paper's
sequential loop over chunks.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, Cache, DynamicCache, PreTrainedModel

from .auto_map import AutoMapMixin
from .capabilities import capabilities
from .configuration_memory import MemoryConfig
from .input_checks import check_embeds, check_inputs, check_matches, check_targets
from .memory_generation import MemoryCache, MemoryGenerationMixin
from .memory_loss import MemoryLossMixin, shifted_targets
from .memory_outputs import MemoryCausalLMOutput, MemoryDecodeOutput, MemoryDecoderInputs, MemoryModelOutput
from .model_utils import FrozenEncoderMixin, VocabularyResizeMixin, as_return, check_no_attentions, output_flags
from .model_utils import select_hidden_states
from .modeling_masked_mixer import MaskedTokenMixing, MultiHeadTokenMixing
from .native_decoders import attach_pretrained_decoder, build_sub_model
from .sequence_ops import IGNORE_INDEX, left_pad_shift, pool_states, roll_rows, row_gather, row_lengths


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
        if module is getattr(self, "decoder_position_embeddings", None):
            nn.init.zeros_(module.weight)  # zero: a pretrained decoder starts out exactly as it was


class MemoryModel(FrozenEncoderMixin, VocabularyResizeMixin, MemoryPreTrainedModel):
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
            self.encoder = build_sub_model(config.encoder_config, causal_lm=False)
            d_enc = config.encoder_config.hidden_size
            if config.compression > 1:
                self.memory_compress = nn.Linear(d_enc, d_enc // config.compression)
                self.memory_expand = nn.Linear(d_enc // config.compression, d_enc)
            if d_enc != d_dec:
                self.memory_projection = nn.Linear(d_enc, d_dec)
        self.filler = nn.Parameter(torch.zeros(d_dec)) if config.filler == "learned" else None
        self.decoder_position_embeddings = None
        if config.position_embedding == "learned":  # one row per decoder position of a chunk: slots, then tokens
            self.decoder_position_embeddings = nn.Embedding(config.decoder_length, d_dec)
        self.decoder = build_sub_model(config.decoder_config, causal_lm=True)
        self.post_init()
        self.apply_freezing()

    @classmethod
    def from_pretrained_decoder(cls, decoder, encoder=None, encoder_config=None, dtype="auto", **config_kwargs):
        """A memory model whose decoder is a pretrained causal LM (e.g. Llama-3.2-1B: the paper's Fig. S6, Tables S1/S2).

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
            decoder = AutoModelForCausalLM.from_pretrained(decoder, dtype=dtype)
        if encoder_config is None and encoder is not None:
            encoder_config = encoder.config
        config = cls.config_class(encoder_config=encoder_config, decoder_config=decoder.config, **config_kwargs)
        return attach_pretrained_decoder(cls, decoder, config, encoder)

    def get_input_embeddings(self):
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.decoder.set_input_embeddings(value)

    # ------------------------------------------------------------------ encoder side
    def _encode_chunks(self, chunk_ids: torch.LongTensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """Memories of `[n, L]` chunks: pooled encoder state, optional bottleneck and projection -> `[n, d_dec]`."""
        config = self.config
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoder_needs_grad):
            if capabilities(config.encoder_config).has_attention:
                hidden = self.encoder(input_ids=chunk_ids, attention_mask=chunk_mask, use_cache=False).last_hidden_state
            else:
                hidden = self.encoder(input_ids=chunk_ids).last_hidden_state  # mixers read pads as tokens
        memory = pool_states(hidden, config.pooling, chunk_mask)  # (n, d_enc)
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

    def decoder_input_embeds(self, embeds: torch.Tensor, positions: torch.LongTensor) -> torch.Tensor:
        """What the decoder reads at decoder `positions` (`[n or 1, len]`): `embeds` (`[n, len, d]`: slots and token
        embeddings) plus, with `position_embedding="learned"`, the learned embedding of each position."""
        if self.decoder_position_embeddings is None:
            return embeds
        return embeds + self.decoder_position_embeddings(positions).to(embeds.dtype)

    def run_decoder(self, embeds, mask, positions, past_key_values=None, use_cache=False, output_attentions=False,
                    output_hidden_states=False):
        """Decoder body on `[n, len, d]` embeddings with a `[n, len]` key mask and `[n or 1, len]` positions.

        Every decoder call goes through here (training, prefill, cached steps, new chunks' slots), so the learned
        position embedding (`decoder_input_embeds`) is added the same way everywhere.
        Returns the decoder base model's output (`last_hidden_state` `[n, len, d]`, and the states / weights asked for).
        """
        embeds = self.decoder_input_embeds(embeds, positions)
        if not capabilities(self.config.decoder_config).has_attention:  # fixed layout, no mask, no positions
            return self.decoder.model(inputs_embeds=embeds, output_hidden_states=output_hidden_states, return_dict=True)
        return self.decoder.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )

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
        return embeds, mask, positions

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
            if not config.window_holds(given * config.chunk_size):
                raise ValueError(
                    f"{given} memories given, but the decoder has only num_memory_slots={config.num_memory_slots}"
                )
        if memory_attention_mask is not None and (memory_embeds is None or memory_attention_mask.shape != memory_embeds.shape[:2]):
            raise ValueError("memory_attention_mask needs memory_embeds and must be [batch, n_memories]: got "
                             f"{tuple(memory_attention_mask.shape)} for memory_embeds "
                             f"{None if memory_embeds is None else tuple(memory_embeds.shape)}")
        num_chunks = -(-length // config.chunk_size)
        if not config.window_holds(given * config.chunk_size + length):
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

    def _decoder_inputs(self, input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask):
        """Checks the inputs and lays them out for the decoder: every chunk of every row with its memory slots.

        Rows are rolled so that each starts at its first real token (`shift`), then padded to whole chunks.
        """
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
            token_embeds = self.get_input_embeddings()(input_ids)  # input order: the returned hidden_states[0]
        else:
            if num_chunks > 1 and self.encoder is not None and not config.no_memory:
                raise ValueError(
                    f"inputs_embeds cover {num_chunks} chunks, but the memory encoder reads token ids: pass input_ids"
                )
            ids, token_embeds = None, inputs_embeds
        tokens = roll_rows(token_embeds, shift)
        chunk, padded = config.chunk_size, num_chunks * config.chunk_size
        pad = padded - length
        mask = F.pad(mask, (0, pad), value=False)
        if ids is not None:
            ids = F.pad(ids, (0, pad), value=config.pad_token_id or 0)
        tokens = F.pad(tokens, (0, 0, 0, pad))
        if ids is None:  # never encoded (one chunk); -1 marks tokens known only by their embeddings
            ids = torch.full((batch, padded), -1, dtype=torch.long, device=device)
        bank, counts, n_used = self._memory_bank(ids, mask, num_chunks, memory_embeds, memory_attention_mask)
        embeds, dec_mask, positions = self._chunk_decoder_inputs(
            tokens.view(batch, num_chunks, chunk, -1), mask.view(batch, num_chunks, chunk), bank, counts
        )
        return MemoryDecoderInputs(
            token_ids=ids, token_mask=mask, shift=shift, length=length, num_chunks=num_chunks, bank=bank,
            counts=counts, memory_embeds=bank[:, :n_used] if not config.no_memory else bank[:, :0],
            embeds=embeds, mask=dec_mask, positions=positions, token_embeds=token_embeds,
        )

    def decode(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        memory_embeds=None,
        memory_attention_mask=None,
        run_decoder: bool = True,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> "MemoryDecodeOutput":
        """The shared forward body: memories, decoder inputs and (if `run_decoder`) one decoder call over all chunks.

        Returns:
            [`MemoryDecodeOutput`]: rows are in rolled order (each row starts at its first real token; undo with
            `roll_rows(x, output.decoder_inputs.shift, inverse=True)`).
        """
        inputs = self._decoder_inputs(input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask)
        return self._decode_inputs(inputs, run_decoder, use_cache, output_attentions, output_hidden_states)

    def _decode_inputs(self, inputs: "MemoryDecoderInputs", run_decoder=True, use_cache=False, output_attentions=False,
                       output_hidden_states=False, chunks=None) -> "MemoryDecodeOutput":
        """`decode` on laid-out inputs. `chunks` (`[b*k]` bool, *optional*): run the decoder on these chunks only
        (chunk `c` of row `r` is `r*k + c`; chunks are independent given their memories); the others' states are
        zeros. Training passes the chunks that have targets (`MemoryForCausalLM.decode_only_chunks_with_targets`)."""
        if not run_decoder:
            return MemoryDecodeOutput(memory_embeds=inputs.memory_embeds, decoder_inputs=inputs)
        cache = DynamicCache(config=self.config.decoder_config) if use_cache else None
        output_hidden_states = bool(output_hidden_states)  # every layer's states (a selection applies on return)
        embeds, mask, positions = inputs.embeds, inputs.mask, inputs.positions
        if chunks is not None:
            embeds, mask = embeds[chunks], mask[chunks]
            positions = positions[chunks] if positions.shape[0] > 1 else positions
        out = self.run_decoder(embeds, mask, positions, cache, use_cache, output_attentions,
                               output_hidden_states)  # (b*k, S+L, d)
        last = out.last_hidden_state
        if chunks is not None:
            last = last.new_zeros(inputs.embeds.shape[:2] + last.shape[2:]).index_put((chunks,), last)
        states = tuple(self._token_states(h, inputs) for h in out.hidden_states) if output_hidden_states else None
        return MemoryDecodeOutput(
            last_hidden_state=self._token_states(last, inputs), memory_embeds=inputs.memory_embeds,
            decoder_inputs=inputs, hidden_states=states, attentions=out.attentions if output_attentions else None,
            decoder_cache=cache,
        )

    def _token_states(self, states: torch.Tensor, inputs: "MemoryDecoderInputs") -> torch.Tensor:
        """Decoder states `[b*k, S+L, d]` of every chunk -> the token positions `[b, T, d]` (rolled order)."""
        batch = inputs.token_ids.shape[0]
        tokens = states[:, self.config.num_memory_slots :].reshape(batch, inputs.token_ids.shape[1], -1)
        return tokens[:, : inputs.length]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        memory_embeds: torch.FloatTensor | None = None,
        memory_attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MemoryModelOutput | tuple:
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
            output_attentions / output_hidden_states / return_dict: as in transformers (see [`MemoryModelOutput`];
                attention weights need `attn_implementation="eager"`; a masked-mixer decoder has none).
        Returns:
            `MemoryModelOutput` with `last_hidden_state` `[batch, seq_len, d_dec]` and `memory_embeds` (a tuple if
            not `return_dict`).
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        decoded = self.decode(input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        shift = decoded.decoder_inputs.shift
        output = MemoryModelOutput(
            last_hidden_state=roll_rows(decoded.last_hidden_state, shift, inverse=True),
            memory_embeds=decoded.memory_embeds, hidden_states=returned_states(decoded, output_hidden_states),
            attentions=decoded.attentions,
        )
        return as_return(output, return_dict)

    def _output_flags(self, output_attentions, output_hidden_states, return_dict):
        """The call's flags (argument, else config); attention weights only from an attention decoder."""
        flags = output_flags(self.config, output_attentions, output_hidden_states, return_dict)
        if not capabilities(self.config.decoder_config).has_attention:
            check_no_attentions("the decoder", flags[0])
        return flags


def unroll_all(states, shift):
    """Undo the rows' roll on each of a tuple of `[b, T, d]` states (`None` stays `None`)."""
    return None if states is None else tuple(roll_rows(h, shift, inverse=True) for h in states)


def returned_states(decoded, selection):
    """The hidden states a forward returns, in input order: the token embeddings the decoder's input was assembled
    from (the tensor the outputs depend on: `retain_grad()` on it gets a gradient), then each layer's token states;
    those `selection` does not pick are `None`."""
    states = unroll_all(decoded.hidden_states, decoded.decoder_inputs.shift)
    if states is not None:
        states = (decoded.decoder_inputs.token_embeds, *states[1:])
    return select_hidden_states(states, selection)


class MemoryForCausalLM(MemoryModel, MemoryLossMixin, MemoryGenerationMixin):
    """Memory model with the decoder's language-modelling head: logits `[batch, seq_len, vocab]` aligned with
    `input_ids`, the paper's losses, and `generate()` with a chunk-aware KV cache (`MemoryCache`)."""

    accepts_loss_kwargs = True  # the loss honours `num_items_in_batch` (Trainer: no extra scaling)
    # Training with labels runs the decoder only on the chunks that have targets (copy and blank-copy rows have none
    # in their first half): the same loss and gradients, less compute. False decodes every chunk.
    decode_only_chunks_with_targets = True

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
        shift_labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MemoryCausalLMOutput | tuple:
        """
        Args:
            input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask, output_attentions,
                output_hidden_states, return_dict: see [`MemoryModel`].
            labels (`[batch, seq_len]`, *optional*): targets aligned with `input_ids` (shifted inside); -100 ignored.
            stream_ids (`[batch]`, *optional*): each row's loss stream (`LOSS_STREAMS`: 0 = causal, 1 = copy,
                2 = retrieval); weights the streams' token-mean losses with `<stream>_loss_weight`.
            past_key_values (`MemoryCache`, *optional*): generation cache; once filled, `input_ids` holds only the
                new tokens. `use_cache=True` without a cache starts one; `use_cache` defaults to `config.use_cache`
                outside training (a masked-mixer decoder has no cache).
            logits_to_keep (`int`): if > 0, only the last `logits_to_keep` positions get logits.
            num_items_in_batch (`int` or `Tensor`, *optional*): target counts of the whole optimizer step (all
                gradient-accumulation micro-batches and processes; passed by the `Trainer`): a scalar total, or
                per loss group as from `loss_target_counts`. The loss then sums this batch's cross-entropy over
                those counts, so that the step's loss and gradient do not depend on how its batch is split.
            shift_labels (`[batch, seq_len]`, *optional*): targets already aligned with the logits (the `Trainer`'s
                under context parallelism); they replace the shifted `labels`.
        Returns:
            `MemoryCausalLMOutput` (loss, logits `[batch, seq_len, vocab]`, past_key_values, memory_embeds,
            stream_losses, hidden_states, attentions), or its tuple if not `return_dict`.
        """
        output_attentions, output_hidden_states, return_dict = self._output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        if isinstance(past_key_values, MemoryCache) and past_key_values.is_filled:
            step = self.cached_step(input_ids, past_key_values, output_attentions, bool(output_hidden_states),
                                    inputs_embeds)
            step.hidden_states = select_hidden_states(step.hidden_states, output_hidden_states)
            return as_return(self._output(step, *self._head_and_loss(step.last_hidden_state), past_key_values),
                             return_dict)
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is not None:
            check_targets(self.config.vocab_size, tuple(reference.shape[:2]), labels, shift_labels)
        has_targets = labels is not None or shift_labels is not None
        use_cache = self.config.use_cache and not self.training if use_cache is None else use_cache
        want_cache = isinstance(past_key_values, MemoryCache) or (use_cache and past_key_values is None)
        want_cache = want_cache and capabilities(self.config.decoder_config).has_attention  # a mixer has no cache
        # Prefill for generate(): the first new token needs only the memories of the complete chunks and ONE decoder
        # pass over each row's last chunk (the pass that fills the cache), not all chunks.
        prefill = (want_cache and not has_targets and logits_to_keep == 1 and not output_attentions
                   and not output_hidden_states and self._ends_on_real_tokens(attention_mask))
        inputs = self._decoder_inputs(input_ids, attention_mask, inputs_embeds, memory_embeds, memory_attention_mask)
        targets = None
        if has_targets:
            targets = shifted_targets(roll_rows(labels, inputs.shift), self.config.chunk_size,
                                      self.config.paper_chunk_targets, roll_rows(shift_labels, inputs.shift),
                                      inputs.token_mask[:, : inputs.length])
        chunks = None
        if (self.training and targets is not None and self.decode_only_chunks_with_targets and not want_cache
                and not output_attentions and not output_hidden_states):
            chunks = self._chunks_with_targets(targets, inputs)
        decoded = self._decode_inputs(inputs, run_decoder=not prefill, use_cache=want_cache,
                                      output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                      chunks=chunks)
        if want_cache:
            num_ids = 0 if input_ids is None else input_ids.shape[1]
            past_key_values, last_hidden = self.fill_cache(past_key_values, inputs, num_ids, decoded.decoder_cache)
        if prefill:
            logits, loss, stream_losses = self._head_and_loss(last_hidden[:, None])  # (b, 1, V)
        else:
            logits, loss, stream_losses = self._head_and_loss(decoded.last_hidden_state, inputs.shift, targets,
                                                              stream_ids, logits_to_keep, num_items_in_batch)
        decoded.hidden_states = returned_states(decoded, output_hidden_states)
        output = self._output(decoded, logits, loss, stream_losses, past_key_values if want_cache else None)
        return as_return(output, return_dict)

    def _chunks_with_targets(self, targets, inputs) -> torch.Tensor | None:
        """The decoder chunks (`[b*k]` bool) with at least one target; `None` (decode all) if every chunk has one,
        or none has (a batch without targets: its zero loss still has a graph)."""
        padded = F.pad(targets, (0, inputs.num_chunks * self.config.chunk_size - targets.shape[1]), value=IGNORE_INDEX)
        chunks = (padded != IGNORE_INDEX).view(-1, self.config.chunk_size).any(-1)
        return None if bool(chunks.all()) or not bool(chunks.any()) else chunks

    @staticmethod
    def _output(decoded, logits, loss, stream_losses, past_key_values) -> MemoryCausalLMOutput:
        """The output of a forward from the decoder's (`decoded`: memories, hidden states and attentions)."""
        return MemoryCausalLMOutput(
            loss=loss, logits=logits, past_key_values=past_key_values, stream_losses=stream_losses,
            memory_embeds=getattr(decoded, "memory_embeds", None), hidden_states=decoded.hidden_states,
            attentions=decoded.attentions,
        )

    def _head_and_loss(self, hidden, shift=None, targets=None, stream_ids=None, logits_to_keep=0,
                       num_items_in_batch=None):
        """The language-modelling head (the one place it runs on the outputs) and the loss.

        Args:
            hidden (`[b, T, d]`): decoder states, rows rolled by `shift`; targets (`[b, T]`, *optional*): rolled too.
        Returns:
            logits `[b, T or logits_to_keep, V]` in input order (`None` in training with targets: the head then runs
            inside the loss, on the positions with targets only), loss and per-stream losses (`None` without targets).
        """
        keep = logits_to_keep if targets is None else 0  # the loss needs every position's logits
        hidden = roll_rows(hidden, shift, inverse=True)
        hidden = hidden[:, -keep:] if keep else hidden
        logits = None if self.training and targets is not None else self.decoder.lm_head(hidden)
        if targets is None:
            return logits, None, None
        rolled = roll_rows(hidden if logits is None else logits, shift)
        loss, stream_losses = self._loss(rolled, targets, stream_ids, num_items_in_batch, logits is not None)
        logits = logits[:, -logits_to_keep:] if logits is not None and logits_to_keep else logits
        return logits, loss, stream_losses

    @staticmethod
    def _ends_on_real_tokens(attention_mask) -> bool:
        """True if every row's last position is a real token (no right padding), as in `generate`'s inputs."""
        return attention_mask is None or bool(attention_mask[:, -1].bool().all())
