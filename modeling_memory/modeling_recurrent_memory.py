"""Recurrent memory transformer (Bulatov et al. 2022), the baseline of Badger 2026 (Fig. S5).

Segments of `chunk_size` tokens go one after the other through the same decoder. Each segment reads the
memory written by the previous one (`num_memory_slots` vectors in front of its tokens) and writes a new
one. The recurrence is inherent: segment `c` needs the memory produced by segment `c - 1`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, LlamaForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from .auto_map import AutoMapMixin
from .configuration_recurrent_memory import RecurrentMemoryConfig
from .input_checks import check_inputs
from .model_utils import (
    VocabularyResizeMixin,
    as_return,
    check_no_attentions,
    embeds_beyond_cache,
    forward_generation_kwargs,
    output_flags,
    refuse_assisted_decoding,
    select_hidden_states,
)
from .modeling_masked_mixer import MaskedMixerForCausalLM, MaskedTokenMixing, MultiHeadTokenMixing
from .sequence_ops import causal_lm_loss, left_pad_shift, map_row_state, roll_rows

DECODER_CLASSES = {"llama": LlamaForCausalLM, "masked_mixer": MaskedMixerForCausalLM}


@dataclass
class RecurrentMemoryCausalLMOutput(ModelOutput):
    """
    Output of [`RecurrentMemoryForCausalLM`].

    Args:
        loss (`[]`, *optional*): token-mean next-token cross-entropy, returned when `labels` are given.
        logits (`[batch, seq_len, vocab]`): aligned with `input_ids` over all segments.
        memory_embeds (`[batch, num_segments, num_memory_slots, hidden]`): the memory written by each
            segment (segments counted from each row's first non-pad token); `None` for a cached step.
        past_key_values (`RecurrentMemoryCache`, *optional*): the generation cache, when one is used.
        hidden_states (*optional*, with `output_hidden_states`): `num_hidden_layers + 1` states `[batch, seq_len,
            hidden]` (a cached step: `[batch, new tokens, hidden]`): the token embeddings the segments' inputs are
            made of, then each decoder layer's states of the token positions.
        attentions (*optional*, with `output_attentions` and eager attention): `num_hidden_layers` weights
            `[batch * num_segments, heads, segment_length, segment_length]` each, row `r * num_segments + s` holding
            segment `s` of row `r` (a cached step: `[batch, heads, new tokens, segment_length]`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    memory_embeds: torch.FloatTensor | None = None
    past_key_values: DynamicCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class RecurrentMemoryCache(DynamicCache):
    """Generation state of an RMT: per row, the memory its current segment reads and that segment's tokens.

    A decoding step recomputes only the current segment (at most `chunk_size` tokens plus the memory slots);
    when a row's segment is full, the memory it writes becomes the row's new read memory. No keys/values
    are stored (the `DynamicCache` base is only what `generate()` expects to carry).

    State (all `[batch, ...]`): memory `[b, m, d]`, segment_embeds `[b, L, d]` (the current segment's token
    embeddings, so that a prompt given as `inputs_embeds` continues too), fill `[b]` (tokens in the segment);
    `num_fed` counts the `input_ids` columns of the current `generate` call consumed so that it feeds only new
    tokens, and `seen` every position read (ids or embeddings).
    """

    state_names = ("memory", "segment_embeds", "fill")
    is_croppable = False  # a written memory cannot be unwritten: generate never rolls this cache back

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_fed = self.seen = 0
        self.memory = self.segment_embeds = self.fill = None

    @property
    def is_filled(self) -> bool:
        return self.memory is not None

    def _map_state(self, fn):
        map_row_state(self, self.state_names, fn)

    def reorder_cache(self, beam_idx: torch.LongTensor):
        self._map_state(lambda x: x.index_select(0, beam_idx.to(x.device)))

    def batch_repeat_interleave(self, repeats: int):
        self._map_state(lambda x: x.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor):
        self._map_state(lambda x: x[indices])

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def crop(self, max_length: int):
        raise NotImplementedError("RecurrentMemoryCache cannot be cropped (segment memories are not reversible)")


class RecurrentMemoryPreTrainedModel(AutoMapMixin, PreTrainedModel):
    config_class = RecurrentMemoryConfig
    _auto_map_classes = {"AutoModelForCausalLM": "RecurrentMemoryForCausalLM"}
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # No `_no_split_modules` here: transformers gathers it from the sub-models actually built (e.g. only
    # LlamaDecoderLayer for a Llama encoder and decoder), which is what FSDP wrapping and device_map need.
    _supports_sdpa = True

    def _init_weights(self, module):
        # The base class covers Linear, Embedding, norms and the inner Llama's rotary `inv_freq` buffer
        # (non-persistent, so it must be recomputed after a meta-device load).
        if isinstance(module, (MaskedTokenMixing, MultiHeadTokenMixing)):
            module.reset_parameters()
        elif isinstance(module, RecurrentMemoryForCausalLM) and module.initial_memory is not None:
            nn.init.normal_(module.initial_memory, mean=0.0, std=self.config.initializer_range)
        else:
            super()._init_weights(module)


class RecurrentMemoryForCausalLM(VocabularyResizeMixin, RecurrentMemoryPreTrainedModel, GenerationMixin):
    """
    Recurrent memory transformer with a language-modelling head.

    `write_position="append"` (default, Bulatov et al.): each segment's decoder input is
    `[read memory (m), segment tokens (L), write slots (m)]`, causal, where the write slots hold the read
    memory vectors; the new memory is the decoder's final hidden state (after its final norm, so the
    memory is on the scale the decoder produces for its head) at the write slots.
    `write_position="last_token"` (the paper's variant): `[memory, tokens 0 .. L-2, memory]`, i.e. the last
    token's embedding is overwritten by the memory; the new memory is the output at that position, which
    also gives that position's logits (it has seen every token of the segment but the last one).
    Segment padding is masked (read and write slots never are), unlike the paper's unmasked decoder.
    `generate()` keeps a [`RecurrentMemoryCache`]: each new token recomputes only its own segment, reading the
    memory carried from the previous one (`use_cache=False` recomputes the whole prefix at each step).
    """

    accepts_loss_kwargs = True  # the loss honours `num_items_in_batch` (Trainer: no extra scaling)

    def __init__(self, config: RecurrentMemoryConfig):
        super().__init__(config)
        self.decoder = DECODER_CLASSES[config.decoder_config.model_type](config.decoder_config)
        hidden = config.decoder_config.hidden_size
        if config.filler == "learned":
            self.initial_memory = nn.Parameter(torch.empty(config.num_memory_slots, hidden))
        else:
            self.initial_memory = None
        self.post_init()

    def get_input_embeddings(self):
        return self.decoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.decoder.lm_head

    def set_output_embeddings(self, value):
        self.decoder.lm_head = value

    def _initial_memory_for(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        shape = (batch, self.config.num_memory_slots, like.shape[-1])
        if self.initial_memory is not None:
            return self.initial_memory.to(like.dtype)[None].expand(shape)
        fill = 1.0 if self.config.filler == "ones" else 0.0
        return like.new_full(shape, fill)

    def _segment(self, memory, embeds, mask, position_ids, output_attentions=False, output_hidden_states=False):
        """One decoder call on one segment.

        Returns:
            token states `[B, L, D]`, the new memory `[B, m, D]`, and the decoder's output over the whole segment
            input (`hidden_states` / `attentions` if asked).
        """
        m = memory.shape[1]
        slots = mask.new_ones(mask.shape[0], m)
        if self.config.write_position == "append":
            inputs = torch.cat([memory, embeds, memory], dim=1)  # (B, m + L + m, D)
            inputs_mask = torch.cat([slots, mask, slots], dim=1)
        else:  # last_token: the memory replaces the last token's embedding
            inputs = torch.cat([memory, embeds[:, :-1], memory], dim=1)  # (B, 1 + L, D)
            inputs_mask = torch.cat([slots, mask[:, :-1], slots], dim=1)
        outputs = self.decoder.model(inputs_embeds=inputs, attention_mask=inputs_mask, position_ids=position_ids,
                                     use_cache=False, output_attentions=output_attentions,
                                     output_hidden_states=output_hidden_states)
        hidden = outputs.last_hidden_state
        return hidden[:, self._token_columns(embeds.shape[1])], hidden[:, -m:], outputs

    def _token_columns(self, length: int) -> slice:
        """Positions of a segment's `length` token states in the decoder input (after the `m` read slots)."""
        m = self.config.num_memory_slots
        return slice(m, m + length)

    def _run_segments(self, embeds: torch.Tensor, mask: torch.Tensor, output_attentions=False,
                      output_hidden_states=False):
        """Runs all segments of right-aligned `[B, S*L, D]` embeddings.

        Returns:
            token states `[B, S*L, D]`, memories `[B, S, m, D]`, per-layer token states (`[B, S*L, D]` each, if
            `output_hidden_states`) and per-layer attention weights (`[B*S, heads, q, k]` each, if `output_attentions`).
        """
        batch, length = mask.shape
        chunk = self.config.chunk_size
        position_ids = torch.arange(self.config.segment_length, device=embeds.device)[None].expand(batch, -1)
        memory = self._initial_memory_for(batch, embeds)
        states, memories, layer_states, attentions = [], [], [], []
        for index, start in enumerate(range(0, length, chunk)):
            segment = slice(start, start + chunk)
            tokens, memory, outputs = self._segment(memory, embeds[:, segment], mask[:, segment], position_ids,
                                                    output_attentions, output_hidden_states)
            states.append(tokens)
            memories.append(memory)
            if output_hidden_states:
                layer_states.append([h[:, self._token_columns(chunk)] for h in outputs.hidden_states])
            if output_attentions:
                attentions.append(outputs.attentions)
            bptt = self.config.bptt_segments
            if bptt is not None and (index + 1) % bptt == 0:
                memory = memory.detach()  # truncated backpropagation through time
        layer_states = tuple(torch.cat(layer, dim=1) for layer in zip(*layer_states)) if output_hidden_states else None
        if output_attentions:  # (B, S, heads, q, k) -> (B*S, heads, q, k): row r, segment s at r * S + s
            attentions = tuple(torch.stack(layer, dim=1).flatten(0, 1) for layer in zip(*attentions))
        return torch.cat(states, dim=1), torch.stack(memories, dim=1), layer_states, attentions or None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        past_key_values: RecurrentMemoryCache | None = None,
        use_cache: bool | None = None,
        shift_labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> RecurrentMemoryCausalLMOutput | tuple:
        """
        Args:
            input_ids (`[batch, seq_len]`): token ids, `seq_len <= config.max_position_embeddings`
                (`max_segments * chunk_size`); a partial last segment is padded internally.
            attention_mask (`[batch, seq_len]`, *optional*): 1 for tokens, 0 for padding (left or right).
            labels (`[batch, seq_len]`, *optional*): targets aligned with `input_ids` (shifted inside, across
                segment boundaries too); `-100` is ignored.
            inputs_embeds (`[batch, seq_len, hidden]`, *optional*): used instead of `input_ids`.
            past_key_values (`RecurrentMemoryCache`, *optional*): generation cache; once filled, `input_ids`
                holds only the new tokens (all real). `use_cache=True` without a cache starts one; `use_cache`
                defaults to `config.use_cache` outside training.
            shift_labels (`[batch, seq_len]`, *optional*): targets already aligned with the logits (the `Trainer`'s
                under context parallelism); they replace the shifted `labels`.
            output_attentions / output_hidden_states / return_dict: as in transformers (see the output's fields;
                attention weights need `attn_implementation="eager"`; a masked-mixer decoder has none).
        Returns:
            [`RecurrentMemoryCausalLMOutput`] with `logits` `[batch, seq_len, vocab]` (a tuple if not `return_dict`).
        """
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if self.config.decoder_config.model_type == "masked_mixer":
            check_no_attentions("the decoder", output_attentions)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if isinstance(past_key_values, RecurrentMemoryCache) and past_key_values.is_filled:
            # decoding step: the prompt was checked at prefill; no per-token device sync here
            states, layer_states, attentions = self.cached_step(input_ids, past_key_values, output_attentions,
                                                                bool(output_hidden_states), inputs_embeds)
            layer_states = select_hidden_states(layer_states, output_hidden_states)
            output = RecurrentMemoryCausalLMOutput(logits=self.decoder.lm_head(states), past_key_values=past_key_values,
                                                   hidden_states=layer_states, attentions=attentions)
            return as_return(output, return_dict)
        check_inputs(self.get_input_embeddings().num_embeddings, self.config.hidden_size, input_ids, attention_mask,
                     inputs_embeds, labels, shift_labels)
        token_embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        embeds, mask, shift, length = self._segment_inputs(token_embeds, attention_mask)
        hidden, memories, layer_states, attentions = self._run_segments(embeds, mask, output_attentions,
                                                                        bool(output_hidden_states))
        use_cache = self.config.use_cache and not self.training if use_cache is None else use_cache
        if isinstance(past_key_values, RecurrentMemoryCache) or (use_cache and past_key_values is None):
            num_ids = 0 if input_ids is None else length
            past_key_values = self.fill_cache(past_key_values, embeds, mask, memories, num_ids)
            past_key_values.seen += length
        hidden = roll_rows(hidden[:, :length], shift, inverse=True)
        if layer_states is not None:  # the first: the token embeddings the segments' inputs were assembled from
            layer_states = (token_embeds, *(roll_rows(h[:, :length], shift, inverse=True) for h in layer_states[1:]))
            layer_states = select_hidden_states(layer_states, output_hidden_states)
        logits = self.decoder.lm_head(hidden)
        loss = None
        if labels is not None or shift_labels is not None:
            loss = causal_lm_loss(logits, labels, num_items_in_batch, shift_labels)
        output = RecurrentMemoryCausalLMOutput(loss=loss, logits=logits, memory_embeds=memories,
                                               past_key_values=past_key_values, hidden_states=layer_states,
                                               attentions=attentions)
        return as_return(output, return_dict)

    def _segment_inputs(self, embeds, attention_mask):
        """Embeddings `[B, S*L, D]` and mask `[B, S*L]` of the token embeddings `embeds` `[B, T, D]`, every row rolled
        to start at its first real token and padded to whole segments; also the rows' `shift` and the length `T`."""
        batch, length = embeds.shape[:2]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {length} exceeds max_position_embeddings={self.config.max_position_embeddings} "
                f"(max_segments={self.config.max_segments} x chunk_size={self.config.chunk_size})"
            )
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=embeds.device)
        attention_mask = attention_mask.to(device=embeds.device, dtype=torch.long)
        # Left-padded rows are rotated so that every row's real tokens start at position 0 of segment 0.
        shift = left_pad_shift(attention_mask)
        embeds, mask = roll_rows(embeds, shift), roll_rows(attention_mask, shift)
        padded = -length % self.config.chunk_size
        return F.pad(embeds, (0, 0, 0, padded)), F.pad(mask, (0, padded)), shift, length

    def fill_cache(self, cache, embeds, mask, memories, num_input_ids: int) -> RecurrentMemoryCache:
        """After a prefill forward over right-aligned `embeds` `[b, S*L, d]` / `mask` `[b, S*L]`: each row's current
        segment state.

        A row with `n` real tokens has `n // L` complete segments; its current segment holds the `n % L`
        tokens after them and reads the memory written by the last complete one (the initial memory if none).
        `num_input_ids`: the `input_ids` columns the prefill consumed (0 for a prompt given as `inputs_embeds`).
        """
        cache = RecurrentMemoryCache() if cache is None else cache
        chunk, batch = self.config.chunk_size, embeds.shape[0]
        rows = torch.arange(batch, device=embeds.device)
        lengths = mask.long().sum(1)  # (b,) real tokens start at 0 after the roll
        complete = torch.div(lengths, chunk, rounding_mode="floor")
        initial = self._initial_memory_for(batch, memories)
        read = memories[rows, (complete - 1).clamp(min=0)]  # (b, m, d)
        cache.memory = torch.where((complete > 0)[:, None, None], read, initial)
        starts = (complete * chunk)[:, None] + torch.arange(chunk, device=embeds.device)[None]  # (b, L)
        embeds = F.pad(embeds, (0, 0, 0, chunk))  # a row ending on a segment boundary reads an empty segment
        cache.segment_embeds = embeds[rows[:, None], starts].detach()
        cache.fill = lengths - complete * chunk
        cache.num_fed += num_input_ids
        return cache

    def cached_step(self, input_ids: torch.LongTensor | None, cache: RecurrentMemoryCache, output_attentions=False,
                    output_hidden_states=False, inputs_embeds: torch.Tensor | None = None):
        """Feed new tokens `[b, q]` (all real), or their embeddings `[b, q, d]` (continuing a prompt given as
        `inputs_embeds`), through a filled cache.

        Returns:
            their decoder states `[b, q, d]`, and (if asked) per-layer states `[b, q, d]` and attention weights
            `[b, heads, q, segment_length]`.
        """
        count = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        total = cache.seen + count
        if total > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {total} exceeds max_position_embeddings={self.config.max_position_embeddings} "
                f"(max_segments={self.config.max_segments} x chunk_size={self.config.chunk_size})"
            )
        embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        steps = [self._cached_token(embeds[:, t], cache, output_attentions, output_hidden_states) for t in range(count)]
        cache.num_fed += count if inputs_embeds is None else 0
        cache.seen = total
        states = torch.stack([step[0] for step in steps], dim=1)
        layer_states = tuple(torch.stack(layer, dim=1) for layer in zip(*[step[1] for step in steps])) or None
        attentions = tuple(torch.stack(layer, dim=2) for layer in zip(*[step[2] for step in steps])) or None
        return states, layer_states, attentions

    def _cached_token(self, embed: torch.Tensor, cache: RecurrentMemoryCache, output_attentions=False,
                      output_hidden_states=False):
        """One token's embedding `[b, d]` per row: recompute the row's current segment, roll the memory of rows that
        complete it.

        Returns the token's state `[b, d]`, per-layer states `[b, d]` and attention rows `[b, heads, k]`."""
        chunk, batch, device = self.config.chunk_size, embed.shape[0], embed.device
        rows = torch.arange(batch, device=device)
        cache.segment_embeds[rows, cache.fill] = embed.to(cache.segment_embeds.dtype)
        cache.fill = cache.fill + 1
        mask = (torch.arange(chunk, device=device)[None] < cache.fill[:, None]).long()  # (b, L)
        position_ids = torch.arange(self.config.segment_length, device=device)[None].expand(batch, -1)
        embeds = cache.segment_embeds
        states, memory, outputs = self._segment(cache.memory.to(embeds.dtype), embeds, mask, position_ids,
                                                output_attentions, output_hidden_states)
        full = cache.fill >= chunk
        last = torch.where(full, chunk, cache.fill) - 1  # (b,) the new token's position in the segment
        if bool(full.any()):
            cache.memory = torch.where(full[:, None, None], memory, cache.memory)
            cache.segment_embeds = cache.segment_embeds.masked_fill(full[:, None, None], 0)
            cache.fill = cache.fill.masked_fill(full, 0)
        column = self._token_columns(chunk).start + last  # (b,) the new token's row in the decoder input
        layer_states = [h[rows, column] for h in outputs.hidden_states] if output_hidden_states else []
        attentions = [a[rows, :, column] for a in outputs.attentions] if output_attentions else []
        return states[rows, last], layer_states, attentions

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        if model_kwargs.get("past_key_values") is not None or generation_config.use_cache is False:
            return
        model_kwargs["past_key_values"] = RecurrentMemoryCache()

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, use_cache=None, **kwargs):
        """Only the tokens the cache has not seen (all of them without a filled cache, or with use_cache=False); a
        prompt given as `inputs_embeds` is read at the first step (the prompt ids, if given too, count as seen; with
        a filled cache, only the embeddings beyond the positions it has read); model kwargs pass through to
        `forward`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": past_key_values,
                  "use_cache": use_cache}
        filled = isinstance(past_key_values, RecurrentMemoryCache) and past_key_values.is_filled
        if filled and inputs_embeds is not None and kwargs.get("is_first_iteration"):
            inputs.update(input_ids=None, inputs_embeds=embeds_beyond_cache(inputs_embeds, past_key_values))
            past_key_values.num_fed = input_ids.shape[1]  # prompt ids passed with the embeddings are not fed again
        elif inputs_embeds is not None and not filled:
            if not isinstance(past_key_values, RecurrentMemoryCache):
                raise ValueError("generate(inputs_embeds=...) needs the RMT's cache: leave use_cache on")
            past_key_values.num_fed = input_ids.shape[1]  # prompt ids passed with the embeddings are not fed again
            inputs.update(input_ids=None, inputs_embeds=inputs_embeds)
        elif filled:
            inputs["input_ids"] = input_ids[:, past_key_values.num_fed :]
        return forward_generation_kwargs(inputs, kwargs)

    def _assisted_decoding(self, *args, **kwargs):
        refuse_assisted_decoding(type(self).__name__, "its cache holds a recurrent memory that cannot be rolled back "
                                 "to the accepted candidate tokens")

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False
