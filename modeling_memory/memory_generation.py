"""Generation for memory models: a chunk-aware KV cache and the cached decoding step.

The cache holds, for every row, the decoder keys/values of its CURRENT chunk: `S` memory-slot columns
followed by token columns. Rows at different chunk phases share one rectangular cache: a row's unused
token columns are masked (`kv_mask`), and positions are given per row, so each row sees exactly what the
uncached forward shows it. When a row completes a chunk, that chunk is encoded into a new memory, the row's
slot keys/values are recomputed for the new chunk and its old token columns are masked; columns that no
row uses any more are dropped.
"""

import torch
from transformers import DynamicCache, GenerationMixin
from transformers.modeling_outputs import BaseModelOutput

from .model_utils import (
    GENERATED_AFTER_EMBEDS,
    PromptEmbedsGenerationMixin,
    embeds_beyond_cache,
    forward_generation_kwargs,
    refuse_assisted_decoding,
)
from .sequence_ops import map_row_state, row_gather, row_lengths


class MemoryCache(DynamicCache):
    """`DynamicCache` of a memory model's decoder plus the per-row chunk state needed to continue decoding.

    Per-row state (all `[batch, ...]`, reordered with the keys/values for beam search):
        kv_mask `[b, S + W]` (bool): which cached columns a row attends to;
        bank `[b, S, d_dec]`: the row's memories from the oldest one its current chunk reads (`memory_window`) on;
        chunk_index `[b]`: global index `g` of the current chunk (= memories available to it);
        chunk_ids / chunk_mask `[b, L]`: tokens of the current chunk (-1: known only by its embedding, from a prompt
        given as `inputs_embeds`); fill `[b]`: how many it has.
    `num_fed` counts the `input_ids` columns of the current `generate` call consumed, so that it feeds only new
    tokens; `seen` counts every position the cache has read (ids or embeddings), so that a `generate` continuing
    from `inputs_embeds` feeds only the embeddings beyond them.
    """

    state_names = ("kv_mask", "bank", "chunk_index", "chunk_ids", "chunk_mask", "fill")
    is_croppable = False  # chunk boundaries rebuild the slots: generate never rolls this cache back

    def __init__(self, config=None, **kwargs):
        # Full (DynamicLayer) layers only: this cache slices its keys/values directly, which the bookkeeping of
        # sliding-window layers (Mistral, Gemma 3) would not follow; windows >= S + L never bind in a chunk.
        super().__init__(**kwargs)
        self.is_filled = False
        self.num_fed = self.seen = 0
        for name in self.state_names:
            setattr(self, name, None)

    def _map_state(self, fn):
        map_row_state(self, self.state_names, fn)

    def reorder_cache(self, beam_idx: torch.LongTensor):
        super().reorder_cache(beam_idx)
        self._map_state(lambda x: x.index_select(0, beam_idx.to(x.device)))

    def batch_repeat_interleave(self, repeats: int):
        super().batch_repeat_interleave(repeats)
        self._map_state(lambda x: x.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor):
        super().batch_select_indices(indices)
        self._map_state(lambda x: x[indices])

    def crop(self, tokens_to_remove: int):
        raise NotImplementedError("MemoryCache cannot be cropped (chunk boundaries rebuild the decoder prefix)")

    def trim(self, num_slots: int):
        """Drop token columns that no row attends to any more (slot columns always stay)."""
        keep = self.kv_mask[:, num_slots:].any(0)
        if bool(keep.all()):
            return
        device = self.kv_mask.device
        index = torch.cat([torch.arange(num_slots, device=device), num_slots + keep.nonzero()[:, 0]])
        for layer in self.layers:
            layer.keys = layer.keys[:, :, index]
            layer.values = layer.values[:, :, index]
        self.kv_mask = self.kv_mask[:, index]


class MemoryGenerationMixin(PromptEmbedsGenerationMixin, GenerationMixin):
    """`generate()` support for `MemoryForCausalLM`: a `MemoryCache` for attention decoders (new tokens only per
    step, chunk boundaries handled inside), full recomputation for masked-mixer decoders."""

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        if self.config.decoder_config.model_type == "masked_mixer":
            return  # mixers have no KV cache: every step re-runs the prefix
        if model_kwargs.get("past_key_values") is not None or generation_config.use_cache is False:
            return super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        if generation_config.cache_implementation not in (None, "dynamic"):
            raise ValueError(
                f"memory models generate with their own MemoryCache; cache_implementation="
                f"{generation_config.cache_implementation!r} is not supported"
            )
        model_kwargs["past_key_values"] = MemoryCache(config=self.config.decoder_config)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        past_key_values=None,
        attention_mask=None,
        inputs_embeds=None,
        use_cache=None,
        **kwargs,
    ) -> dict:
        """Only the tokens the cache has not seen (all of them without a filled cache). A prompt given as
        `inputs_embeds` is read at the first step (the prompt ids, if given too, count as seen; without a cache
        it is re-read at every step; with a filled cache, only the embeddings beyond the positions it has read);
        memories and other model kwargs pass through to `forward`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": past_key_values,
                  "use_cache": use_cache}
        filled = isinstance(past_key_values, MemoryCache) and past_key_values.is_filled
        if filled and inputs_embeds is not None and kwargs.get("is_first_iteration"):
            inputs.update(input_ids=None, inputs_embeds=embeds_beyond_cache(inputs_embeds, past_key_values))
            past_key_values.num_fed = input_ids.shape[1]  # prompt ids passed with the embeddings are not fed again
        elif filled:
            inputs["input_ids"] = input_ids[:, past_key_values.num_fed :]
        elif inputs_embeds is not None and isinstance(past_key_values, MemoryCache):
            past_key_values.num_fed = input_ids.shape[1]  # prompt ids passed with the embeddings are not fed again
            inputs.update(input_ids=None, inputs_embeds=inputs_embeds)
        elif inputs_embeds is not None:  # no cache (masked-mixer decoder): the prompt, then the tokens so far
            generated = kwargs.get(GENERATED_AFTER_EMBEDS, 0)
            inputs.update(input_ids=None,
                          inputs_embeds=self.prompt_embeds_with_new_tokens(input_ids, inputs_embeds, generated))
        return forward_generation_kwargs(inputs, kwargs)

    def _assisted_decoding(self, *args, **kwargs):
        reason = ("its decoder has no KV cache" if self.config.decoder_config.model_type == "masked_mixer" else
                  "a MemoryCache cannot be cropped back to the accepted candidates (chunk boundaries rebuild it)")
        refuse_assisted_decoding(type(self).__name__, reason)

    def fill_cache(self, cache, inputs, num_input_ids: int, decoder_cache: DynamicCache | None = None):
        """After a (prefill) forward over `inputs` ([`MemoryDecoderInputs`]): keys/values of every row's last chunk,
        and the per-row chunk state.

        Args:
            num_input_ids: the `input_ids` columns the prefill consumed (0 for a prompt given as `inputs_embeds`).
            decoder_cache (*optional*): the keys/values of every chunk from the forward's own decoder call, taken
                instead of running the decoder again over each row's last chunk.
        Returns:
            the filled `MemoryCache`, and the decoder's hidden state `[b, d]` at each row's last real token (`None`
            when `decoder_cache` is given: the forward has it).
        """
        cache = MemoryCache(config=self.config.decoder_config) if cache is None else cache
        chunk, num_chunks = self.config.chunk_size, inputs.num_chunks
        ids, mask = inputs.token_ids, inputs.token_mask  # rolled, padded to k*L
        batch = ids.shape[0]
        rows = torch.arange(batch, device=ids.device)
        lengths = row_lengths(mask)
        last_chunk = torch.div((lengths - 1).clamp(min=0), chunk, rounding_mode="floor")  # (b,)
        selected = rows * num_chunks + last_chunk  # decoder row of each row's last chunk
        positions = inputs.positions[selected] if inputs.positions.shape[0] > 1 else inputs.positions
        dec_mask = inputs.mask[selected]  # (b, S+L)
        hidden = None
        if decoder_cache is None:
            out = self.run_decoder(inputs.embeds[selected], dec_mask, positions, cache, use_cache=True)
            hidden = out.last_hidden_state
        else:
            for index, layer in enumerate(decoder_cache.layers):
                cache.update(layer.keys[selected], layer.values[selected], index)
        cache.kv_mask = dec_mask.clone()
        cache.chunk_index = inputs.counts + last_chunk
        # Keep only the S bank columns from the oldest memory the current chunk reads on: with a rolling window
        # the cache then stays the same size however long the input and the generation.
        first, _ = self.memory_window(cache.chunk_index)
        columns = (first[:, None] + torch.arange(self.config.num_memory_slots, device=ids.device))
        cache.bank = row_gather(inputs.bank, columns.clamp(max=inputs.bank.shape[1] - 1))
        cache.chunk_ids = ids.view(batch, num_chunks, chunk)[rows, last_chunk].clone()
        cache.chunk_mask = mask.view(batch, num_chunks, chunk)[rows, last_chunk].clone()
        cache.fill = lengths - last_chunk * chunk
        cache.num_fed += num_input_ids
        cache.seen += inputs.length
        cache.is_filled = True
        cache.trim(self.config.num_memory_slots)
        last = self.config.num_memory_slots + cache.fill - 1  # (b,) column of the last real token
        return cache, None if hidden is None else hidden[rows, last]

    def cached_step(self, input_ids: torch.LongTensor | None, cache: MemoryCache, output_attentions=False,
                    output_hidden_states=False, inputs_embeds: torch.Tensor | None = None) -> BaseModelOutput:
        """Feed new tokens `[b, q]` (all real), or their embeddings `[b, q, d]` (continuing a prompt given as
        `inputs_embeds`), through a filled cache.

        Returns:
            their decoder states `[b, q, d]` and, if asked, per-layer states `[b, q, d]` and the attention weights
            `[b, heads, 1, cached columns]` of a single new token (the cached columns change from token to token).
        """
        count = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        if output_attentions and count != 1:
            raise ValueError(f"output_attentions over a filled MemoryCache needs one new token per call, got "
                             f"{count}: the cached columns change from token to token")
        steps = [self._cached_token(None if input_ids is None else input_ids[:, t], cache, output_attentions,
                                    output_hidden_states, None if inputs_embeds is None else inputs_embeds[:, t])
                 for t in range(count)]
        cache.num_fed += count if inputs_embeds is None else 0
        cache.seen += count
        layer_states = None
        if output_hidden_states:
            layer_states = tuple(torch.cat(layer, dim=1) for layer in zip(*[step.hidden_states for step in steps]))
        return BaseModelOutput(
            last_hidden_state=torch.cat([step.last_hidden_state for step in steps], dim=1),
            hidden_states=layer_states, attentions=steps[0].attentions if output_attentions else None,
        )

    def _cached_token(self, token: torch.LongTensor | None, cache: MemoryCache, output_attentions=False,
                      output_hidden_states=False, embed: torch.Tensor | None = None):
        """One token per row (or its embedding `[b, d]`, the token then known only by it) through the cache; the
        decoder's output over that position (`[b, 1, d]` states)."""
        batch = (token if embed is None else embed).shape[0]
        device = cache.fill.device
        crossing = cache.fill >= self.config.chunk_size
        if bool(crossing.any()):
            self._start_new_chunks(crossing.nonzero()[:, 0], cache)
        rows = torch.arange(batch, device=device)
        cache.chunk_ids[rows, cache.fill] = -1 if token is None else token
        cache.chunk_mask[rows, cache.fill] = True
        positions = self.token_positions(self.memory_window(cache.chunk_index)[1], cache.fill)[:, None]  # (b, 1)
        embeds = self.get_input_embeddings()(token[:, None]) if embed is None else embed[:, None]  # (b, 1, d)
        mask = torch.cat([cache.kv_mask, cache.kv_mask.new_ones(batch, 1)], dim=1)
        out = self.run_decoder(embeds, mask, positions, cache, True, output_attentions, output_hidden_states)
        cache.kv_mask = mask
        cache.fill = cache.fill + 1
        cache.trim(self.config.num_memory_slots)
        return out

    def _start_new_chunks(self, rows: torch.LongTensor, cache: MemoryCache):
        """Rows whose chunk is full: encode it into a memory and rebuild their slot keys/values."""
        config = self.config
        slots_n = config.num_memory_slots
        old_index = cache.chunk_index[rows]
        if config.memory_window == "bounded" and bool((old_index + 1 >= slots_n).any()):
            raise ValueError(
                f"generation would need chunk {int(old_index.max()) + 1} but the model holds {slots_n} chunks: "
                f"max_position_embeddings={config.max_position_embeddings} tokens including given memories "
                "(memory_window='rolling' generates any length)"
            )
        old_first, _ = self.memory_window(old_index)
        if not config.no_memory:
            if self.encoder is None:
                raise ValueError("this memory model has no encoder: generation cannot cross a chunk boundary")
            if bool((cache.chunk_ids[rows] < 0).any()):
                raise ValueError("generation from inputs_embeds cannot cross a chunk boundary: the memory encoder "
                                 "reads token ids, and the prompt's chunk is known only by its embeddings (pass "
                                 "input_ids, or fewer new tokens)")
            memory = self._encode_chunks(cache.chunk_ids[rows], cache.chunk_mask[rows])  # (r, d)
            cache.bank[rows, old_index - old_first] = memory.to(cache.bank.dtype)
        new_first, visible = self.memory_window(old_index + 1)
        # Rolling window: the oldest memory leaves the bank (shift 1); bounded: shift 0.
        columns = ((new_first - old_first)[:, None] + torch.arange(slots_n, device=rows.device)).clamp(max=slots_n - 1)
        cache.bank[rows] = row_gather(cache.bank[rows], columns)
        cache.chunk_index[rows] = old_index + 1
        cache.fill[rows] = 0
        cache.chunk_mask[rows] = False
        first = torch.zeros_like(visible)[:, None]  # the bank now starts at the oldest memory read
        slots, slot_mask, slot_positions = self.slot_inputs(cache.bank[rows], first, visible[:, None])
        fresh = DynamicCache(config=config.decoder_config)
        self.run_decoder(slots[:, 0], slot_mask[:, 0], slot_positions[None], fresh, use_cache=True)
        for layer, new in zip(cache.layers, fresh.layers):
            layer.keys[rows, :, :slots_n] = new.keys
            layer.values[rows, :, :slots_n] = new.values
        cache.kv_mask[rows, :slots_n] = slot_mask[:, 0]
        cache.kv_mask[rows, slots_n:] = False
