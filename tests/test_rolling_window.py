"""Rolling memory window (`MemoryConfig.memory_window="rolling"`): inputs and generations of any length.

Tiny models: chunk 4, 4 slots, so the bounded window holds 16 tokens and chunk g >= 3 reads m_{g-3} .. m_{g-1}.
"""

import pytest
import torch

from cases_memory import CHUNK, SLOTS, VOCAB, memory_config, randomize_positions
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM
from memory_models.modeling_memory.configuration_memory import DEFAULT_ROLLING_CONTEXT

LAYOUTS = {
    "fixed_ones": dict(filler="ones"),
    "variable": dict(memory_layout="variable", filler="masked"),
    "fixed_ones_positions": dict(filler="ones", position_embedding="learned"),
    "mixer_decoder": dict(decoder="mixer", encoder_hidden=16),
}


def build(seed: int = 0, window: str = "rolling", **kw) -> MemoryForCausalLM:
    torch.manual_seed(seed)
    return randomize_positions(MemoryForCausalLM(memory_config(memory_window=window, **kw))).eval()


def ids_of(batch: int, length: int, seed: int = 1) -> torch.LongTensor:
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy(model, ids, new_tokens, **kw):
    return model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **kw)


@torch.no_grad()
def logits(model, ids, **kw):
    return model(ids, **kw).logits


def test_config_fields_and_context():
    """`max_position_embeddings` advertises max_context under the rolling window; bad values are refused."""
    bounded = memory_config()
    assert bounded.memory_window == "bounded" and bounded.max_position_embeddings == CHUNK * SLOTS
    assert memory_config(memory_window="rolling").max_position_embeddings == DEFAULT_ROLLING_CONTEXT
    rolling = memory_config(memory_window="rolling", max_context=4096)
    reloaded = MemoryConfig.from_dict(rolling.to_dict())
    assert (reloaded.memory_window, reloaded.max_context, reloaded.max_position_embeddings) == ("rolling", 4096, 4096)
    old = bounded.to_dict()
    for key in ("memory_window", "max_context"):
        old.pop(key)  # a config.json written before the rolling window existed
    assert MemoryConfig.from_dict(old).memory_window == "bounded"
    with pytest.raises(ValueError, match="'sliding'"):
        memory_config(memory_window="sliding")
    switched = memory_config()
    switched.memory_window = "rolling"  # at run time, as from_pretrained(..., memory_window="rolling") does
    assert switched.max_position_embeddings == DEFAULT_ROLLING_CONTEXT
    switched.max_context = 2048
    assert switched.max_position_embeddings == 2048
    switched.memory_window = "bounded"
    assert switched.max_position_embeddings == CHUNK * SLOTS
    with pytest.raises(ValueError, match="'sliding'"):
        switched.memory_window = "sliding"
    with pytest.raises(ValueError, match="max_context=4096 needs memory_window='rolling'"):
        memory_config(max_context=4096)
    with pytest.raises(ValueError, match="max_context must be a positive integer, got 0"):
        memory_config(memory_window="rolling", max_context=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rolling_equals_bounded_where_the_input_fits(layout):
    """On inputs that fit the bounded window (here 14 tokens and 2 memories + 6 tokens) both windows agree."""
    model = build(**LAYOUTS[layout])
    ids = ids_of(2, 14)
    rolling = logits(model, ids)
    memories = model.encode(ids[:, :8])
    rolling_given = logits(model, ids[:, 8:], memory_embeds=memories)
    model.config.memory_window = "bounded"
    torch.testing.assert_close(rolling, logits(model, ids), rtol=0, atol=0)
    torch.testing.assert_close(rolling_given, logits(model, ids[:, 8:], memory_embeds=memories), rtol=0, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_chunk_reads_its_window(layout):
    """Past the window, chunk g's logits equal a direct call on its tokens with memories m_{g-3} .. m_{g-1}."""
    model = build(**LAYOUTS[layout])
    ids = ids_of(2, 10 * CHUNK + 2)  # 11 chunks, one forward (one encoder and one decoder call)
    full = logits(model, ids)
    assert full.shape == (2, ids.shape[1], VOCAB)
    for g in range(11):
        tokens = ids[:, g * CHUNK : (g + 1) * CHUNK]
        memories = None
        if g:
            memories = model.encode(ids[:, : g * CHUNK])[:, max(g - (SLOTS - 1), 0) :]  # the window, oldest first
        direct = logits(model, tokens, memory_embeds=memories)
        torch.testing.assert_close(full[:, g * CHUNK : (g + 1) * CHUNK], direct, rtol=1e-4, atol=1e-5)


def test_long_precomputed_memories():
    """Any number of given memories works: generating after encode(prefix of 9 chunks) == from the full ids."""
    model = build()
    ids = ids_of(2, 9 * CHUNK + 3)
    memories = model.encode(ids[:, : 9 * CHUNK])
    assert memories.shape[1] == 9 > SLOTS
    torch.testing.assert_close(logits(model, ids[:, 9 * CHUNK :], memory_embeds=memories),
                               logits(model, ids)[:, 9 * CHUNK :], rtol=1e-4, atol=1e-5)
    full = greedy(model, ids, 10)
    assert torch.equal(greedy(model, ids[:, 9 * CHUNK :], 10, memory_embeds=memories)[:, -10:], full[:, -10:])


@pytest.mark.parametrize("layout", ["fixed_ones", "variable"])
def test_cached_generation_beyond_the_window(layout):
    """Cached greedy generation equals recomputation 10+ chunks past the window: every step's logits equal the
    uncached forward's at that position (the forward is causal, so one call over the result checks all steps).
    The cache stays bounded: S slots + one chunk of key/value columns, S memories."""
    model = build(**LAYOUTS[layout])
    ids = ids_of(2, 3)
    new = (SLOTS + 11) * CHUNK  # ends in chunk 15: eleven chunks past the bounded window of 4
    out = greedy(model, ids, new, return_dict_in_generate=True, output_logits=True)
    uncached = logits(model, out.sequences)[:, ids.shape[1] - 1 : -1]  # (b, new, V)
    torch.testing.assert_close(torch.stack(out.logits, dim=1), uncached, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.sequences[:, ids.shape[1] :], uncached.argmax(-1))
    cache = out.past_key_values
    assert cache.chunk_index.tolist() == [15, 15]
    assert cache.get_seq_length() <= SLOTS + CHUNK and tuple(cache.bank.shape[:2]) == (2, SLOTS)


def test_left_padded_batch_equals_rows_alone():
    """Forward logits and cached generation of a left-padded batch of long rows equal each row alone."""
    model = build(filler="masked")
    rows = [ids_of(1, n, seed=n)[0] for n in (5, 23, 30)]
    width = max(len(r) for r in rows)
    ids, mask = torch.full((3, width), 1), torch.zeros(3, width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :], mask[r, width - len(row) :] = row, 1
    batched_logits = logits(model, ids, attention_mask=mask)
    batched = greedy(model, ids, 2 * CHUNK + 3, attention_mask=mask)
    for r, row in enumerate(rows):
        torch.testing.assert_close(batched_logits[r, width - len(row) :], logits(model, row[None])[0],
                                   rtol=1e-4, atol=1e-5)
        assert torch.equal(batched[r, width:], greedy(model, row[None], 2 * CHUNK + 3)[0, len(row) :])


def test_mixer_decoder_generation_beyond_the_window():
    """A masked-mixer decoder (no KV cache) generates past the window as the argmax of full forwards."""
    model = build(**LAYOUTS["mixer_decoder"])
    sequence = ids_of(1, 15)
    generated = greedy(model, sequence, 6)
    for _ in range(6):
        sequence = torch.cat([sequence, logits(model, sequence)[:, -1].argmax(-1)[:, None]], dim=1)
    assert torch.equal(generated, sequence)


def test_bounded_window_still_refuses_long_inputs():
    """The default bounded window keeps refusing what does not fit, and names the rolling option."""
    model = build(window="bounded")
    with pytest.raises(ValueError, match="17 tokens .*memory_window='rolling'"):
        logits(model, ids_of(1, 17))


def test_long_context_benchmark_quick(tmp_path, capsys):
    """`python -m memory_models.eval.benchmarks long-context --quick --repeats 2` writes every row; the memory model's
    KV cache is
    the same size at every length (the full-context Llama's grows); answering from a bank equals encoding on the
    fly; every timing is a median with its min-max over 2 runs and the decode clock counted new_tokens - 1 steps."""
    import json

    from benchmark_checks import assert_spreads
    from memory_models.eval.benchmarks import cli as benchmark
    from memory_models.eval.benchmarks.long_context import QUICK

    output = tmp_path / "long.json"
    assert benchmark.main(["long-context", "--quick", "--repeats", "2", "--threads", "2", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    rows = result["rows"]
    assert [row["context"] for row in rows] == [64, 128] and "| 128 |" in capsys.readouterr().out
    assert rows[0]["kv_cache_bytes"]["memory"] == rows[1]["kv_cache_bytes"]["memory"] > 0
    assert rows[1]["kv_cache_bytes"]["full_context"] > rows[0]["kv_cache_bytes"]["full_context"]
    assert all(row["bank_equals_on_the_fly"] for row in rows)
    assert result["settings"]["sizes"]["decode_repeats"] == 2 and set(result["settings"]["samples"]) == {
        "generation", "decode", "encode"}  # the decode rounds: 2 at --quick sizes, like --repeats 2 here
    candidates = {"memory_bank", "memory_on_the_fly", "full_context"}
    assert all(row["decode_steps"] == dict.fromkeys(candidates, QUICK.new_tokens - 1) for row in rows)
    figures = assert_spreads(result, 2, {f"/{figure}/{name}" for figure in ("ttft_s", "decode_tokens_per_s")
                                         for name in candidates} | {
        "/decode_over_shortest/memory_bank", "/decode_over_shortest/memory_on_the_fly", "/encode_tokens_per_s",
        "/ratios/ttft_bank_over_full", "/ratios/ttft_on_the_fly_over_full"})
    assert len(figures) == 2 * 11
    same = {"median": 1.0, "min": 1.0, "max": 1.0, "interval": [1.0, 1.0], "runs": 2}  # the shortest length against itself, round by round
    assert rows[0]["decode_over_shortest"] == {"memory_bank": same, "memory_on_the_fly": same}
    names = {check["name"].split(" at ")[0] for check in result["targets"]}
    assert names == {"ttft_bank_over_full", "ttft_on_the_fly_over_full", "memory decode tokens/s (from a bank)"}
    assert {check["status"] for check in result["targets"]} == {"n/a"}  # stated for the full sizes
