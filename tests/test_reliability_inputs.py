"""Bad input gets a ValueError naming the values at every public entry point (never an IndexError deep in an
embedding, a silent broadcast or NaN logits), and a masked mixer gives a left-padded row its unpadded result."""

import pytest
import torch

from cases_autoencoder import autoencoder, llama_block
from cases_masked_mixer import mixer_config
from cases_memory import VOCAB, memory_config
from cases_recurrent_memory import recurrent_model
from memory_models.modeling_memory import MaskedMixerForCausalLM, MemoryForCausalLM


@pytest.fixture(scope="module")
def memory():
    torch.manual_seed(0)
    return MemoryForCausalLM(memory_config(filler="ones")).eval()


def ids(batch=2, length=10, low=2):
    return torch.randint(low, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=torch.full((2, 6), VOCAB)), r"input_ids holds values from 99 to 99, outside the vocabulary \[0, 99\)"),
    (dict(input_ids=-ids()), r"input_ids holds values from -\d+ to -\d+"),
    (dict(input_ids=ids().float()), "input_ids must hold integer token ids, got dtype torch.float32"),
    (dict(input_ids=ids(), labels=ids()[:, :5]), r"labels has shape \(2, 5\), but input_ids is \(2, 10\)"),
    (dict(input_ids=ids(), labels=ids() + VOCAB), r"labels holds values from .* outside the vocabulary \[0, 99\) or -100"),
    (dict(input_ids=ids(), attention_mask=torch.ones(1, 10)), r"attention_mask has shape \(1, 10\), but input_ids is"),
    (dict(input_ids=ids(), memory_embeds=torch.randn(1, 1, 32)), "memory_embeds has batch size 1, but the input has 2"),
    (dict(input_ids=ids(), memory_embeds=torch.full((2, 1, 32), float("nan"))), "memory_embeds holds NaN or inf"),
    (dict(input_ids=ids(), memory_embeds=torch.ones(2, 1, 32, dtype=torch.long)), "memory_embeds must be a floating"),
    (dict(input_ids=ids(), memory_embeds=torch.randn(2, 2, 32), memory_attention_mask=torch.ones(1, 2)),
     r"memory_attention_mask needs .* got \(1, 2\) for memory_embeds \(2, 2, 32\)"),
    (dict(inputs_embeds=torch.randn(2, 3, 16)), r"inputs_embeds must be \[batch, n, 32\], got shape \(2, 3, 16\)"),
])
def test_memory_model_forward_rejects_bad_input(memory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory(**kwargs)


def test_memory_model_encode_and_generate_reject_bad_input(memory):
    with pytest.raises(ValueError, match="seq_len 0"):
        memory.encode(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, seq_len\], got shape \(10,\)"):
        memory.encode(ids()[0])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        memory.encode(ids() + VOCAB)
    with pytest.raises(ValueError, match="memory_embeds has batch size 1, but the input has 2"):
        memory.generate(ids(length=4), memory_embeds=torch.randn(1, 1, 32), max_new_tokens=2, do_sample=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        memory.generate(ids(length=4) + VOCAB, max_new_tokens=2, do_sample=False)


@pytest.mark.parametrize("build", [
    lambda: MaskedMixerForCausalLM(mixer_config()),
    lambda: recurrent_model(),
    lambda: autoencoder(llama_block(), llama_block()),
], ids=["masked_mixer", "recurrent_memory", "autoencoder"])
def test_other_families_reject_bad_input(build):
    model = build().eval()
    with pytest.raises(ValueError, match=r"input_ids holds values from 99 to 99"):
        model(input_ids=torch.full((2, 6), VOCAB))
    with pytest.raises(ValueError, match=r"labels has shape \(2, 5\), but input_ids is \(2, 6\)"):
        model(input_ids=ids(length=6), labels=ids(length=5))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\)"):
        model(input_ids=ids(length=6), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[batch, n, 32\], got shape \(2, 6, 7\)"):
        model(inputs_embeds=torch.randn(2, 6, 7))


@pytest.mark.parametrize("overrides", [{}, dict(num_heads=2, kernel_size=2)], ids=["plain", "multi_head"])
def test_masked_mixer_left_padding_gives_the_unpadded_result(overrides):
    """A left-padded row's logits and greedy generation equal those of the row run alone."""
    torch.manual_seed(0)
    model = MaskedMixerForCausalLM(mixer_config(pad_token_id=0, eos_token_id=1, **overrides)).eval()
    short, long = ids(1, 5), ids(1, 9)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = torch.cat([torch.cat([torch.zeros(1, 4), torch.ones(1, 5)], 1), torch.ones(1, 9)]).long()
    with torch.no_grad():
        padded = model(input_ids=batch, attention_mask=mask).logits
        alone = model(input_ids=short).logits
        torch.testing.assert_close(padded[0, 4:], alone[0])
        torch.testing.assert_close(padded[1], model(input_ids=long).logits[0])
    generated = model.generate(batch, attention_mask=mask, max_new_tokens=4, do_sample=False)
    single = model.generate(short, max_new_tokens=4, do_sample=False)
    assert generated[0, 9:].tolist() == single[0, 5:].tolist()
