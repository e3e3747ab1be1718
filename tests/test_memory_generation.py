"""generate() of MemoryForCausalLM: the chunk-aware MemoryCache against full recomputation (chunk 4, 4 slots)."""

import pytest
import torch

from cases_memory import CHUNK, VOCAB, memory_config, randomize_positions
from memory_models.modeling_memory import MemoryForCausalLM
from memory_models.modeling_memory.memory_generation import MemoryCache

LAYOUTS = {
    "fixed_ones": dict(filler="ones"),
    "fixed_masked": dict(filler="masked"),
    "variable": dict(memory_layout="variable", filler="masked"),
    "fixed_ones_positions": dict(filler="ones", position_embedding="learned"),
}


def build(seed: int = 0, **kw) -> MemoryForCausalLM:
    torch.manual_seed(seed)
    return randomize_positions(MemoryForCausalLM(memory_config(**kw))).eval()


def ids_of(batch: int, length: int, seed: int = 1) -> torch.LongTensor:
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy(model, ids, new_tokens, **kw):
    # min_new_tokens suppresses EOS, so every row generates exactly `new_tokens` tokens
    return model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kw)


def left_padded(rows):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), 1)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :], mask[r, width - len(row) :] = row, 1
    return ids, mask


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cached_equals_uncached_across_chunks(layout):
    """Cached greedy generation equals recomputation across three chunk boundaries (2 + 14 tokens, chunk 4)."""
    model, ids = build(**LAYOUTS[layout]), ids_of(2, 2)
    cached = greedy(model, ids, 14)
    assert torch.equal(cached, greedy(model, ids, 14, use_cache=False))
    assert cached.shape == (2, 16)


def test_generate_uses_memory_cache():
    """generate() runs with a MemoryCache and feeds only new tokens once it is filled."""
    model = build()
    out = model.generate(ids_of(1, 3), max_new_tokens=6, min_new_tokens=6, do_sample=False,
                         return_dict_in_generate=True)
    cache = out.past_key_values
    assert isinstance(cache, MemoryCache) and cache.is_filled and cache.num_fed == 8
    assert cache.fill.tolist() == [4] and cache.chunk_index.tolist() == [1]  # 8 tokens fed: chunk 1 is full
    assert cache.get_seq_length() <= 4 + 2 * CHUNK


@pytest.mark.parametrize("layout", ["fixed_ones", "variable"])
def test_step_logits_equal_full_forward(layout):
    """Every generated step's logits equal a full forward's last-position logits (left-padded batch)."""
    model = build(**LAYOUTS[layout])
    ids, mask = left_padded([ids_of(1, n, seed=n)[0] for n in (3, 6, 1)])
    out = model.generate(ids, attention_mask=mask, max_new_tokens=9, min_new_tokens=9, do_sample=False,
                         output_logits=True, return_dict_in_generate=True)
    for step, step_logits in enumerate(out.logits):
        prefix = out.sequences[:, : ids.shape[1] + step]
        prefix_mask = torch.cat([mask, torch.ones(3, step, dtype=mask.dtype)], dim=1)
        with torch.no_grad():
            expected = model(prefix, attention_mask=prefix_mask).logits[:, -1]
        torch.testing.assert_close(step_logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_beams", [1, 2])
@pytest.mark.parametrize("layout", ["fixed_masked", "variable"])
def test_left_padded_batch_equals_rows_alone(layout, num_beams):
    """A left-padded batch generates exactly what each row generates alone (greedy and beam search)."""
    model = build(**LAYOUTS[layout])
    rows = [ids_of(1, n, seed=n)[0] for n in (2, 5, 7)]
    ids, mask = left_padded(rows)
    batched = greedy(model, ids, 8, attention_mask=mask, num_beams=num_beams)
    for r, row in enumerate(rows):
        alone = greedy(model, row[None], 8, num_beams=num_beams)
        assert torch.equal(batched[r, -8:], alone[0, -8:]), (r, batched[r], alone[0])


def test_sampling_reproducible():
    """Sampling with a fixed seed is reproducible and equal with and without the cache."""
    model, ids = build(), ids_of(2, 3)
    runs = []
    for use_cache in (True, True, False):
        torch.manual_seed(123)
        runs.append(model.generate(ids, max_new_tokens=10, min_new_tokens=10, do_sample=True, top_k=20,
                                   use_cache=use_cache))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("layout", ["fixed_ones", "variable"])
def test_generate_with_memory_embeds(layout):
    """Generating after `memory_embeds=encode(prefix)` equals generating from the full ids."""
    model, ids = build(**LAYOUTS[layout]), ids_of(2, 10)
    split = 2 * CHUNK
    full = greedy(model, ids, 5)
    memories = model.encode(ids[:, :split])
    assert torch.equal(greedy(model, ids[:, split:], 5, memory_embeds=memories)[:, -5:], full[:, -5:])
    beams = model.generate(ids[:, split:], memory_embeds=memories, max_new_tokens=5, min_new_tokens=5, num_beams=2)
    assert torch.equal(beams[:, -5:], greedy(model, ids, 5, num_beams=2)[:, -5:])


def test_context_limit():
    """Prompts or generations beyond max_position_embeddings raise a ValueError."""
    model = build()
    with pytest.raises(ValueError, match="17 tokens"):
        greedy(model, ids_of(1, 17), 1)
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        greedy(model, ids_of(1, 14), 4)


@pytest.mark.parametrize("encoder", ["llama", "mixer"])
def test_mixer_decoder_greedy_equals_argmax(encoder):
    """With a masked-mixer decoder (no KV cache), greedy generation is the argmax of full forwards."""
    model = build(encoder=encoder, decoder="mixer", encoder_hidden=16)
    sequence = ids_of(2, 3)
    generated = greedy(model, sequence, 11)
    for _ in range(11):
        with torch.no_grad():
            next_token = model(sequence).logits[:, -1].argmax(-1)
        sequence = torch.cat([sequence, next_token[:, None]], dim=1)
    assert torch.equal(generated, sequence)


def test_prefill_decodes_only_the_last_chunk():
    """generate()'s prefill runs the decoder on one chunk per row (not all chunks), with exact first logits."""
    model = build()
    ids = ids_of(2, 3 * CHUNK + 2)  # four chunks
    calls = []
    hook = model.decoder.model.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    finally:
        hook.remove()
    assert calls == [2], calls  # one decoder call over the batch's 2 last chunks
    with torch.no_grad():
        full = model(ids).logits[:, -1]
    torch.testing.assert_close(out.logits[0], full)
