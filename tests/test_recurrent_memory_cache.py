"""RMT generation cache: cached decoding (current segment only) equals recomputing the whole prefix."""

import json

import pytest
import torch

from cases_recurrent_memory import VOCAB, recurrent_model
from memory_models.modeling_memory.modeling_recurrent_memory import RecurrentMemoryCache

VARIANTS = {
    "append": {},
    "append_learned_2": {"filler": "learned", "num_memory_tokens": 2},
    "last_token": {"write_position": "last_token"},
    "mixer": {"decoder": "masked_mixer", "filler": "zeros"},
}


def build(name: str):
    torch.manual_seed(0)
    overrides = dict(VARIANTS[name])
    return recurrent_model(overrides.pop("decoder", "llama"), **overrides).eval()


def left_padded_batch():
    """Rows of 6, 4 and 3 real tokens (chunk 4: one row ends exactly on a segment boundary), left-padded."""
    generator = torch.Generator().manual_seed(7)
    lengths = [6, 4, 3]
    ids = torch.full((3, 6), 1)
    mask = torch.zeros(3, 6, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, 6 - n :] = torch.randint(2, VOCAB, (n,), generator=generator)
        mask[row, 6 - n :] = 1
    return ids, mask


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_generate_equals_uncached(variant):
    """Greedy generate with the segment cache (the default) gives the same tokens and step logits as full
    recomputation (`use_cache=False`)."""
    model = build(variant)
    ids, mask = left_padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=9, min_new_tokens=9, do_sample=False, pad_token_id=1,
                  output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        cached = model.generate(ids, **kwargs)
        uncached = model.generate(ids, use_cache=False, **kwargs)
    assert isinstance(cached.past_key_values, RecurrentMemoryCache)
    assert cached.past_key_values.num_fed == 6 + 9 - 1
    assert cached.sequences.tolist() == uncached.sequences.tolist()
    torch.testing.assert_close(torch.stack(cached.logits), torch.stack(uncached.logits))


def test_cached_steps_equal_forward_logits():
    """Feeding tokens one by one through a filled cache reproduces the forward logits at every position."""
    model = build("append")
    ids, mask = left_padded_batch()
    continuation = torch.randint(2, VOCAB, (3, 7), generator=torch.Generator().manual_seed(8))
    full_ids = torch.cat([ids, continuation], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(continuation)], dim=1)
    with torch.no_grad():
        expected = model(full_ids, attention_mask=full_mask).logits[:, 6:]
        prefill = model(ids, attention_mask=mask, use_cache=True)
        cache = prefill.past_key_values
        steps = [model(continuation[:, t : t + 1], past_key_values=cache).logits for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), expected)


def test_cache_respects_the_context_limit():
    """A cached step past max_position_embeddings (16 here) is the same ValueError as an uncached forward."""
    model = build("append")
    with torch.no_grad():
        cache = model(torch.full((1, 15), 5), use_cache=True).past_key_values
        model(torch.full((1, 1), 5), past_key_values=cache)
        with pytest.raises(ValueError, match="17 exceeds max_position_embeddings=16"):
            model(torch.full((1, 1), 5), past_key_values=cache)


def test_generation_benchmark_quick(tmp_path, capsys):
    """`eval.benchmarks rmt-generation --quick --repeats 2` writes its JSON and table; both decodings give the same
    tokens; every timing is a median with its min-max over 2 calls."""
    from benchmark_checks import assert_spreads
    from memory_models.eval.benchmarks.cli import main

    output = tmp_path / "rmt.json"
    assert main(["rmt-generation", "--quick", "--repeats", "2", "--output", str(output)]) == 0
    result = json.loads(output.read_text())["rmt_generation"]
    assert result["same_tokens"] is True and result["prompt"] == 24 and result["new_tokens"] == 8
    figures = assert_spreads(result, 2, {"/speedup"} | {f"/{kind}_{figure}" for kind in ("cached", "uncached")
                                                        for figure in ("seconds", "tokens_per_s", "decode_tokens_per_s")})
    assert len(figures) == 7
    assert "segment cache" in capsys.readouterr().out
