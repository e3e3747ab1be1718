"""Masked-mixer specific properties: causality, masking, kernel, multi-head definition, lengths."""

import pytest
import torch
import torch.nn.functional as F

from cases_masked_mixer import mixer_config
from memory_models.modeling_memory import MaskedMixerForCausalLM, MaskedMixerModel
from memory_models.modeling_memory.modeling_masked_mixer import MaskedTokenMixing, MultiHeadTokenMixing


@pytest.mark.parametrize("overrides", [{}, {"kernel_size": 4}, {"num_heads": 2}, {"num_heads": 4, "kernel_size": 3}])
def test_causality(overrides):
    """Changing token i leaves every logit before i unchanged and changes logits at i."""
    torch.manual_seed(0)
    model = MaskedMixerForCausalLM(mixer_config(**overrides)).eval()
    ids = torch.randint(0, 99, (2, 16))
    for i in (0, 5, 15):
        changed = ids.clone()
        changed[:, i] = (changed[:, i] + 1) % 99
        with torch.no_grad():
            a, b = model(ids).logits, model(changed).logits
        torch.testing.assert_close(a[:, :i], b[:, :i], rtol=0, atol=0)
        assert (a[:, i] - b[:, i]).abs().max() > 1e-4


def test_masked_weights_get_no_gradient_and_are_never_written():
    """Masking is functional: upper-triangular weights get zero gradient and keep their values."""
    torch.manual_seed(0)
    model = MaskedMixerForCausalLM(mixer_config(kernel_size=2))
    mixing = model.model.layers[0].token_mixing
    before = mixing.weight.detach().clone()
    ids = torch.randint(0, 99, (2, 16))
    model(ids, labels=ids).loss.backward()
    upper = torch.ones(16, 16, dtype=torch.bool).triu(1)
    assert mixing.weight.grad[upper].abs().max() == 0
    assert mixing.weight.grad[~upper].abs().max() > 0
    torch.testing.assert_close(mixing.weight.detach(), before, rtol=0, atol=0)
    assert before[upper].abs().max() > 0  # the stored weights are not zeroed in place


def test_token_mixing_matches_definition():
    """y[t, h] = b[t] + sum_{t'<=t} sum_m W[t, t', m] x[t', h + m - (k-1)//2] (zero padded), per spec §1.1."""
    torch.manual_seed(0)
    length, hidden, k = 6, 5, 4
    layer = MaskedTokenMixing(length, k)
    x = torch.randn(2, length, hidden)
    padded = F.pad(x, ((k - 1) // 2, k - 1 - (k - 1) // 2))
    expected = torch.zeros(2, length, hidden)
    for t in range(length):
        expected[:, t] = layer.bias[t]
        for s in range(t + 1):
            for m in range(k):
                expected[:, t] += layer.weight[t, s, m] * padded[:, s, m : m + hidden]
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_multi_head_matches_per_head_definition():
    """The grouped multi-head mixer equals separate heads: project d -> d/h, mix, concatenate, project."""
    torch.manual_seed(0)
    length, hidden, heads, k = 5, 8, 2, 3
    layer = MultiHeadTokenMixing(hidden, length, k, heads)
    x = torch.randn(3, length, hidden)
    z = layer.head_proj(x)
    outputs = []
    for h in range(heads):
        head = MaskedTokenMixing(length, k)
        head.weight.data.copy_(layer.weight[h])
        head.bias.data.copy_(layer.bias[h])
        outputs.append(head(z[..., h * hidden // heads : (h + 1) * hidden // heads]))
    expected = layer.out_proj(torch.cat(outputs, dim=-1))
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    # Heads are distinct (the reference's stale-index bug made them identical).
    assert not torch.allclose(outputs[0], outputs[1])


def test_shorter_inputs_equal_prefix_of_full_length():
    """A length-T input gives the first T outputs of a full-length input (causal sub-block)."""
    torch.manual_seed(0)
    model = MaskedMixerForCausalLM(mixer_config(kernel_size=3)).eval()
    ids = torch.randint(0, 99, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, :7]).logits, model(ids).logits[:, :7], rtol=1e-5, atol=1e-5)


def test_too_long_input_is_rejected():
    """Inputs beyond the mixer length raise a ValueError naming both numbers."""
    model = MaskedMixerModel(mixer_config())
    with pytest.raises(ValueError, match="17.*16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_tied_embeddings_stay_tied_after_reload(tmp_path):
    """With tie_word_embeddings the head shares the embedding, also after save/load."""
    model = MaskedMixerForCausalLM(mixer_config(tie_word_embeddings=True))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    reloaded = MaskedMixerForCausalLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    untied = MaskedMixerForCausalLM(mixer_config())
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()


def test_generate_matches_greedy_argmax():
    """generate() without cache equals repeated argmax over full forwards."""
    torch.manual_seed(0)
    model = MaskedMixerForCausalLM(mixer_config(kernel_size=2)).eval()
    ids = torch.randint(2, 99, (2, 5))
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         pad_token_id=1, eos_token_id=None)
    expected = ids
    for _ in range(6):
        with torch.no_grad():
            nxt = model(expected).logits[:, -1].argmax(-1, keepdim=True)
        expected = torch.cat([expected, nxt], dim=1)
    assert torch.equal(out, expected)


def test_gradient_checkpointing_layers_follow_every_n_layers():
    """The blocks are transformers GradientCheckpointingLayers: `every_n_layers` and the checkpoint function chosen by
    `gradient_checkpointing_enable` apply to them (the same-gradients check is in the common contract tests)."""
    model = MaskedMixerForCausalLM(mixer_config(num_hidden_layers=4))
    model.gradient_checkpointing_enable(every_n_layers=2)
    assert [block.gradient_checkpointing for block in model.model.layers] == [True, False, True, False]
    model.gradient_checkpointing_disable()
    assert not any(block.gradient_checkpointing for block in model.model.layers)
