"""Recurrent memory transformer (RMT baseline) properties: layout, recurrence, masking, BPTT, generation."""

import pytest
import torch
from transformers import AutoModel

from cases_recurrent_memory import CHUNK, VOCAB, recurrent_config, recurrent_model
from memory_models.modeling_memory import RecurrentMemoryConfig, RecurrentMemoryForCausalLM

VARIANTS = {
    "append": {},
    "append_learned_2": {"filler": "learned", "num_memory_tokens": 2},
    "last_token": {"write_position": "last_token"},
    "mixer": {"decoder": "masked_mixer", "filler": "zeros"},
}


def build(name: str, seed: int = 0) -> RecurrentMemoryForCausalLM:
    torch.manual_seed(seed)
    overrides = dict(VARIANTS[name])
    return recurrent_model(overrides.pop("decoder", "llama"), **overrides).eval()


def logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(ids, **kwargs).logits


def ids_of(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes(variant):
    """Logits cover every position of every segment; one memory per (possibly partial) segment."""
    model = build(variant)
    out = model(ids_of(3, 14))
    m = model.config.num_memory_tokens
    assert out.logits.shape == (3, 14, VOCAB)
    assert out.memory_embeds.shape == (3, 4, m, 32)  # 14 tokens = 3 full segments + 1 partial


@pytest.mark.parametrize("variant", VARIANTS)
def test_causality(variant):
    """Changing token t leaves every logit before t unchanged, across segment boundaries too."""
    model = build(variant)
    ids = ids_of(2, 16)
    base = logits(model, ids)
    for t in (0, 2, 5, 9, 15):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        torch.testing.assert_close(logits(model, changed)[:, :t], base[:, :t], rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", ["append", "append_learned_2", "mixer"])
def test_token_changes_own_and_later_segments(variant):
    """A token affects its own logit and (through the memory) every later segment."""
    model = build(variant)
    ids = ids_of(2, 16)
    changed = ids.clone()
    changed[:, 1] = (changed[:, 1] + 1) % VOCAB
    diff = (logits(model, changed) - logits(model, ids)).abs()
    for position in (1, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 3):
        assert diff[:, position].max() > 1e-5, position


def test_last_token_mode_never_reads_the_segment_last_token():
    """Paper variant: the last token of each full segment is overwritten by the memory, so it is never input."""
    model = build("last_token")
    ids = ids_of(2, 16)
    changed = ids.clone()
    changed[:, CHUNK - 1] = (changed[:, CHUNK - 1] + 1) % VOCAB
    torch.testing.assert_close(logits(model, changed), logits(model, ids), rtol=0, atol=0)
    changed = ids.clone()
    changed[:, CHUNK - 2] = (changed[:, CHUNK - 2] + 1) % VOCAB
    assert (logits(model, changed)[:, CHUNK:] - logits(model, ids)[:, CHUNK:]).abs().max() > 1e-5


@pytest.mark.parametrize("variant", ["append", "append_learned_2", "last_token", "mixer"])
def test_segments_interact_only_through_memory(variant):
    """With the memory reset at every segment, segment 1 ignores segment 0 and equals segment 1 run alone."""
    model = build(variant)
    segment = model._segment

    def reset_memory(memory, *args):
        return segment(model._initial_memory_for(memory.shape[0], memory), *args)

    model._segment = reset_memory
    ids = ids_of(2, 2 * CHUNK)
    changed = ids.clone()
    changed[:, :CHUNK] = ids_of(2, CHUNK, seed=7)
    second = logits(model, ids)[:, CHUNK:]
    torch.testing.assert_close(logits(model, changed)[:, CHUNK:], second, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, ids[:, CHUNK:]), second, rtol=0, atol=1e-6)


def test_append_layout_matches_a_manual_decoder_call():
    """Segment 1 = decoder([memory of segment 0, tokens, memory of segment 0]) at the token positions."""
    model = build("append_learned_2")
    ids = ids_of(2, 2 * CHUNK)
    with torch.no_grad():
        out = model(ids)
        memory = out.memory_embeds[:, 0]  # (B, m, D)
        embeds = model.get_input_embeddings()(ids[:, CHUNK:])
        hidden = model.decoder.model(inputs_embeds=torch.cat([memory, embeds, memory], 1)).last_hidden_state
        expected = model.decoder.lm_head(hidden[:, 2 : 2 + CHUNK])
        first = model.decoder(inputs_embeds=torch.cat([model.initial_memory[None].expand(2, -1, -1),
                                                        model.get_input_embeddings()(ids[:, :CHUNK])], 1)).logits
    torch.testing.assert_close(out.logits[:, CHUNK:], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits[:, :CHUNK], first[:, 2:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_rows_match_rows_alone(variant, side):
    """A row in a left- or right-padded batch gives the same logits on its tokens as the row alone."""
    model = build(variant)
    lengths, width = [14, 5, 9], 14
    ids = torch.full((3, width), 1)
    mask = torch.zeros(3, width, dtype=torch.long)
    rows = [ids_of(1, n, seed=n)[0] for n in lengths]
    for r, (row, n) in enumerate(zip(rows, lengths)):
        span = slice(0, n) if side == "right" else slice(width - n, width)
        ids[r, span], mask[r, span] = row, 1
    batched = logits(model, ids, attention_mask=mask)
    for r, (row, n) in enumerate(zip(rows, lengths)):
        span = slice(0, n) if side == "right" else slice(width - n, width)
        torch.testing.assert_close(batched[r, span], logits(model, row[None])[0], rtol=1e-4, atol=1e-5)


def test_attention_mask_is_used():
    """Pads inside a segment are excluded: the write slots (so later segments) don't see them."""
    model = build("append")
    ids = ids_of(1, 10)
    padded = torch.cat([ids[:, :3], torch.full((1, 1), 1), ids[:, 3:]], 1)
    mask = torch.ones_like(padded)
    mask[:, 3] = 0
    with_mask = logits(model, padded, attention_mask=mask)
    without = logits(model, padded)
    assert (with_mask[:, 4:] - without[:, 4:]).abs().max() > 1e-5


@pytest.mark.parametrize("bptt, blocked", [(1, True), (2, True), (3, True), (4, False), (None, False)])
def test_truncated_bptt_blocks_gradients(bptt, blocked):
    """bptt_segments=k detaches the memory after every k segments: a loss on segment 3 reaches segment 0 iff k >= 4."""
    torch.manual_seed(0)
    model = recurrent_model(bptt_segments=bptt)
    embeds = model.get_input_embeddings()(ids_of(2, 4 * CHUNK)).detach().requires_grad_(True)
    model(inputs_embeds=embeds).logits[:, 3 * CHUNK :].sum().backward()
    grad = embeds.grad.abs()
    assert grad[:, 3 * CHUNK :].max() > 0
    assert (grad[:, :CHUNK].max() == 0) == blocked
    # bptt=2: windows {0, 1} and {2, 3}, so segment 2 gets a gradient and segment 1 none.
    if bptt == 2:
        assert grad[:, CHUNK : 2 * CHUNK].max() == 0 and grad[:, 2 * CHUNK : 3 * CHUNK].max() > 0


def test_loss_is_token_mean_across_segment_boundaries():
    """The loss is one causal CE over all shifted targets, boundary targets included; -100 is ignored."""
    model = build("append")
    ids = ids_of(2, 12)
    labels = ids.clone()
    labels[0, 5] = -100
    with torch.no_grad():
        out = model(ids, labels=labels)
    valid = labels[:, 1:] != -100
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1][valid], labels[:, 1:][valid])
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_generate_equals_argmax_of_full_forwards(variant):
    """generate() (segment cache) crosses segment boundaries and equals argmax of full-sequence forwards."""
    model = build(variant)
    prompt = ids_of(1, 3)
    generated = model.generate(prompt, max_new_tokens=10, min_new_tokens=10, do_sample=False, pad_token_id=1)
    assert generated.shape == (1, 13)
    for t in range(3, 13):
        assert generated[0, t] == logits(model, generated[:, :t])[0, -1].argmax()


def test_left_padded_generate_matches_rows_alone():
    """Batched generation with left padding gives each row's solo generation."""
    model = build("append")
    rows = [ids_of(1, 6, seed=3), ids_of(1, 2, seed=4)]
    ids = torch.tensor([rows[0][0].tolist(), [1] * 4 + rows[1][0].tolist()])
    mask = (torch.arange(6)[None] >= torch.tensor([[0], [4]])).long()
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=1)
    batched = model.generate(ids, attention_mask=mask, **kwargs)
    for r, row in enumerate(rows):
        alone = model.generate(row, **kwargs)
        assert batched[r, -5:].tolist() == alone[0, -5:].tolist()


def test_bad_inputs_raise_value_errors():
    """Too long inputs, both/neither of ids and embeddings, and a wrong mask shape are ValueErrors."""
    model = build("append")
    with pytest.raises(ValueError, match="17 exceeds max_position_embeddings=16"):
        model(ids_of(1, 17))
    model(ids_of(1, 16))  # exactly max_segments * chunk_size is fine
    with pytest.raises(ValueError, match="exactly one"):
        model()
    ids = ids_of(1, 5)
    with pytest.raises(ValueError, match="exactly one"):
        model(ids, inputs_embeds=model.get_input_embeddings()(ids))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 4\)"):
        model(ids, attention_mask=torch.ones(1, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"filler": "random"}, "filler"),
        ({"write_position": "prepend"}, "write_position"),
        ({"bptt_segments": 0}, "bptt_segments"),
        ({"write_position": "last_token", "num_memory_tokens": 2}, "num_memory_tokens=1"),
    ],
)
def test_bad_configs_raise_value_errors(overrides, message):
    """Invalid configuration values are rejected with the offending value named."""
    with pytest.raises(ValueError, match=message):
        recurrent_config(**overrides)


def test_decoder_too_short_for_segment_is_rejected():
    """A decoder whose context can't hold read slots + chunk + write slots is a ValueError naming both."""
    decoder = recurrent_config().decoder_config
    decoder.max_position_embeddings = CHUNK + 1
    with pytest.raises(ValueError, match=f"sees {CHUNK + 2} positions.*accepts {CHUNK + 1}"):
        RecurrentMemoryConfig(decoder, chunk_size=CHUNK)


def test_tied_decoder_embeddings_survive_save_and_load(tmp_path):
    """A decoder with tie_word_embeddings keeps head and embedding tied after from_pretrained."""
    torch.manual_seed(0)
    config = recurrent_config()
    config.decoder_config.tie_word_embeddings = True
    model = RecurrentMemoryForCausalLM(config).eval()
    assert model.decoder.lm_head.weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    reloaded = RecurrentMemoryForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.decoder.lm_head.weight is reloaded.get_input_embeddings().weight
    ids = ids_of(1, 10)
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), rtol=0, atol=0)


def test_the_rmt_is_its_own_base_model():
    """The RMT has no headless class (transformers' test_model_base_model_prefix does not apply): `base_model` is the
    model, and AutoModel refuses its config with a ValueError."""
    model = build("append")
    assert model.base_model is model
    with pytest.raises(ValueError, match="RecurrentMemoryConfig"):
        AutoModel.from_config(model.config)
