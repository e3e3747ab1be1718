"""Model-specific tests of the memory autoencoder / information-retention probe."""

import pytest
import torch
from transformers import LlamaModel, Qwen3Config

from cases_autoencoder import VOCAB, autoencoder, bert_block, llama_block, mixer_block
from memory_models.modeling_memory import MaskedMixerModel, MemoryAutoencoder
from memory_models.modeling_memory.modeling_autoencoder import unroll_index, unroll_windows
from memory_models.modeling_memory.sequence_ops import pool_states


def qwen3_block(**overrides) -> Qwen3Config:
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                  pad_token_id=1)
    return Qwen3Config(**{**kwargs, **overrides})


def unroll_loop(embedding: torch.Tensor, length: int) -> torch.Tensor:
    """Spec §2.4 literally: `win_i[q] = e[(i mod D + q) mod D]`, `q < D/2`, one position at a time."""
    hidden = embedding.shape[-1]
    windows = []
    for i in range(length):
        j = i % hidden
        windows.append(torch.stack([embedding[:, (j + q) % hidden] for q in range(hidden // 2)], dim=-1))
    return torch.stack(windows, dim=1)  # (B, L, D/2)


def train_steps(model, ids, steps, lr=3e-3):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("kind", ["llama", "mixer"])
def test_learns_to_reconstruct_a_fixed_batch(kind):
    """A tiny autoencoder reconstructs a fixed 8 x 16 batch (>= 99% accuracy, CE < 0.05) within 300 Adam steps.

    The budget is a step count, not a time: a loaded shared machine is slower, never less converged.
    """
    torch.manual_seed(0)
    block = llama_block(64, num_attention_heads=4) if kind == "llama" else mixer_block(hidden_size=64)
    model = autoencoder(block)
    ids = torch.randint(2, VOCAB, (8, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    accuracy, loss = 0.0, float("inf")
    for _ in range(300):
        out = model(ids, labels=ids)
        accuracy, loss = (out.logits.argmax(-1) == ids).float().mean().item(), out.loss.item()
        if accuracy >= 0.99 and loss < 0.05:
            break
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert accuracy >= 0.99 and loss < 0.05, (accuracy, loss)


def test_frozen_encoder_is_bit_identical_after_training():
    """With freeze_encoder, training leaves every encoder tensor unchanged while the decoder moves."""
    torch.manual_seed(0)
    model = autoencoder(llama_block(), freeze_encoder=True)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    train_steps(model, torch.randint(2, VOCAB, (4, 16)), steps=3)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert any(not torch.equal(v, decoder_before[k]) for k, v in model.decoder.state_dict().items())
    assert not model.encoder.training, "a frozen encoder stays in eval mode (no dropout)"


def test_frozen_encoder_runs_without_grad():
    """A fully frozen encoder builds no autograd graph; with a fresh embedding, gradients flow through it."""
    for fresh, expected in ((False, [False]), (True, [True])):
        model = autoencoder(llama_block(), freeze_encoder=True, fresh_encoder_embedding=fresh).train()
        modes = []
        model.encoder.register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
        ids = torch.randint(2, VOCAB, (2, 16))
        model(ids, labels=ids)
        assert modes == expected


def test_freezing_survives_from_pretrained(tmp_path):
    """requires_grad flags are re-applied after save_pretrained / from_pretrained."""
    model = autoencoder(bert_block(), llama_block(), freeze_encoder=True, fresh_encoder_embedding=True)
    model.save_pretrained(tmp_path)
    reloaded = MemoryAutoencoder.from_pretrained(tmp_path)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    assert {n: p.requires_grad for n, p in reloaded.named_parameters()} == flags
    trainable_encoder = [n for n, p in reloaded.encoder.named_parameters() if p.requires_grad]
    assert trainable_encoder == ["embeddings.word_embeddings.weight"]


@pytest.mark.parametrize("length,hidden", [(16, 32), (12, 8), (40, 16), (1, 4)])
def test_unroll_gather_equals_loop_definition(length, hidden):
    """The one-gather unroll equals the spec's per-position loop, including L > D wrap-around."""
    embedding = torch.randn(3, hidden)
    torch.testing.assert_close(unroll_windows(embedding, length), unroll_loop(embedding, length), rtol=0, atol=0)
    assert unroll_index(length, hidden).shape == (length, hidden // 2)


def test_unroll_expansion_uses_one_shared_projection():
    """`expand` in unroll mode is the shared projection of the loop-defined windows, shorter inputs included."""
    torch.manual_seed(0)
    model = autoencoder(llama_block())
    memory = torch.randn(2, 32)
    for length in (16, 5):
        expected = model.projection(unroll_loop(memory, length))
        torch.testing.assert_close(model.expand(memory, length), expected)


def test_repeat_has_no_projection():
    """expansion='repeat' tiles the embedding and builds no projection (no unused parameters)."""
    model = autoencoder(llama_block(), expansion="repeat")
    assert not hasattr(model, "projection")
    assert not any("projection" in name for name, _ in model.named_parameters())
    memory = torch.randn(2, 32)
    torch.testing.assert_close(model.expand(memory, 16), memory[:, None].expand(2, 16, 32))


def test_decoder_has_no_token_embedding():
    """The decoder reads inputs_embeds only: no decoder embedding parameter exists."""
    for block in (llama_block(), mixer_block()):
        model = autoencoder(block)
        assert model.decoder.embed_tokens is None
        assert not any(name.startswith("decoder.embed_tokens") for name, _ in model.named_parameters())
        assert model.get_input_embeddings() is model.encoder.get_input_embeddings()


def test_compression_comes_before_the_bridge():
    """compression acts at the encoder width (d_e -> d_e/c -> d_e), then the bridge maps d_e -> d_dec."""
    model = autoencoder(llama_block(32), llama_block(16), compression=4)
    assert (model.compression_down.in_features, model.compression_down.out_features) == (32, 8)
    assert (model.compression_up.in_features, model.compression_up.out_features) == (8, 32)
    assert (model.bridge.in_features, model.bridge.out_features) == (32, 16)
    out = model(torch.randint(2, VOCAB, (2, 16)))
    assert out.logits.shape == (2, 16, VOCAB) and out.memory_embeds.shape == (2, 16)


def test_mixer_encoder_penultimate_pooling_ignores_the_last_token():
    """With a causal mixer encoder and penultimate pooling, the last input token cannot reach the embedding."""
    torch.manual_seed(0)
    model = autoencoder(mixer_block(), expansion="repeat", pooling="penultimate").eval()
    assert isinstance(model.encoder, MaskedMixerModel)
    ids = torch.randint(2, VOCAB, (2, 16))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB
    changed_earlier = ids.clone()
    changed_earlier[:, -2] = (changed_earlier[:, -2] + 1) % VOCAB
    with torch.no_grad():
        base, last, earlier = (model(x).memory_embeds for x in (ids, changed, changed_earlier))
    torch.testing.assert_close(base, last, rtol=0, atol=0)
    assert not torch.allclose(base, earlier)


def test_last_nonpad_pooling_ignores_right_padding():
    """pooling='last_nonpad' with a causal encoder: a right-padded row gives the unpadded row's embedding."""
    torch.manual_seed(0)
    model = autoencoder(llama_block(), pooling="last_nonpad").eval()
    ids = torch.randint(2, VOCAB, (1, 10))
    padded = torch.cat([ids, torch.ones(1, 6, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 6)], dim=1).long()
    with torch.no_grad():
        alone = model(ids).memory_embeds
        in_padding = model(padded, attention_mask=mask).memory_embeds
    torch.testing.assert_close(in_padding, alone, rtol=1e-5, atol=1e-5)


def test_one_pooling_rule_and_its_edges():
    """`pool_states`, which the autoencoder and the memory model's encoder both use: last_nonpad takes each row's last
    real token under left or right padding, and the last position (as "last") for a row without real tokens or
    without a mask; penultimate needs two positions."""
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])  # a padded row, a row without any real token
    torch.testing.assert_close(pool_states(hidden, "last_nonpad", mask), torch.stack([hidden[0, 2], hidden[1, 3]]))
    torch.testing.assert_close(pool_states(hidden, "last_nonpad"), hidden[:, 3])
    torch.testing.assert_close(pool_states(hidden, "last", mask), hidden[:, 3])
    torch.testing.assert_close(pool_states(hidden, "penultimate", mask), hidden[:, 2])
    with pytest.raises(ValueError, match="penultimate.*seq_len=1"):
        pool_states(hidden[:, :1], "penultimate")
    model = autoencoder(llama_block(), pooling="last_nonpad").eval()  # the autoencoder follows the rule
    ids = torch.randint(2, VOCAB, (2, 8))
    with torch.no_grad():
        no_token = model(ids, attention_mask=torch.zeros_like(ids)).memory_embeds
        states = model.encoder(input_ids=ids, attention_mask=torch.zeros_like(ids)).last_hidden_state
    assert not hasattr(model, "bridge") and model.config.compression == 1  # the embedding is the pooled state
    torch.testing.assert_close(no_token, states[:, -1])


def test_input_length_checks():
    """Inputs longer than max_position_embeddings raise a ValueError naming the lengths; shorter ones run."""
    model = autoencoder(llama_block())
    with pytest.raises(ValueError, match="17.*16"):
        model(torch.randint(2, VOCAB, (1, 17)))
    assert model(torch.randint(2, VOCAB, (2, 9))).logits.shape == (2, 9, VOCAB)
    with pytest.raises(ValueError, match="exactly one"):
        model()


def test_loss_is_unshifted_and_safe_without_targets():
    """The loss is the unshifted CE over labels != -100, and 0 (not NaN) when every label is -100."""
    torch.manual_seed(0)
    model = autoencoder(llama_block()).eval()
    ids = torch.randint(2, VOCAB, (2, 16))
    labels = ids.clone()
    labels[:, ::2] = -100
    out = model(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    assert model(ids, labels=torch.full_like(ids, -100)).loss.item() == 0.0


@pytest.mark.parametrize("encoder_config", [bert_block(), qwen3_block()], ids=["bert", "qwen3"])
def test_transformers_encoders_build_train_and_reload(encoder_config, tmp_path):
    """BERT / Qwen3 random encoders: build, one step trains every parameter, save/load reproduces logits."""
    torch.manual_seed(0)
    model = autoencoder(encoder_config, llama_block())
    ids = torch.randint(2, VOCAB, (2, 16))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    model(ids, labels=ids).loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert [n for n, p in model.named_parameters() if torch.equal(p, before[n])] == []
    model.eval()
    with torch.no_grad():
        expected = model(ids).logits
    model.save_pretrained(tmp_path)
    reloaded = MemoryAutoencoder.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected, rtol=0, atol=0)


def test_from_encoder_copies_weights_and_freezes():
    """from_encoder copies a pretrained base model, freezes it, and leaves the source module untouched."""
    torch.manual_seed(0)
    source = LlamaModel(llama_block())
    snapshot = {k: v.clone() for k, v in source.state_dict().items()}
    probe = MemoryAutoencoder.from_encoder(source, llama_block(16), max_position_embeddings=16)
    for key, value in probe.encoder.state_dict().items():
        assert torch.equal(value, snapshot[key]), key
    assert not any(p.requires_grad for p in probe.encoder.parameters())
    assert probe.config.freeze_encoder and hasattr(probe, "bridge")
    assert probe.encoder is not source

    fresh = MemoryAutoencoder.from_encoder(source, llama_block(), max_position_embeddings=16,
                                           fresh_encoder_embedding=True)
    embedding = fresh.encoder.get_input_embeddings().weight
    assert embedding.requires_grad and not torch.equal(embedding, snapshot["embed_tokens.weight"])
    torch.testing.assert_close(fresh.encoder.norm.weight, snapshot["norm.weight"])
    for key, value in source.state_dict().items():
        assert torch.equal(value, snapshot[key]), key


def test_from_encoder_drops_bert_pooler():
    """A pretrained BERT (with pooler) wraps cleanly: the pooler never feeds last_hidden_state and is dropped."""
    from transformers import BertModel

    source = BertModel(bert_block())
    assert source.pooler is not None
    probe = MemoryAutoencoder.from_encoder(source, llama_block(), max_position_embeddings=16)
    assert probe.encoder.pooler is None
    assert probe(torch.randint(2, VOCAB, (2, 16))).logits.shape == (2, 16, VOCAB)


def test_bad_encoder_weights_raise():
    """from_encoder with weights that do not fit the config raises a ValueError listing the keys."""
    source = LlamaModel(llama_block())
    del source.norm
    with pytest.raises(ValueError, match="norm.weight"):
        MemoryAutoencoder.from_encoder(source, llama_block(), max_position_embeddings=16)


def test_benchmark_helpers_run_small():
    """The benchmark helpers run on tiny sizes and return their keys (gather == loop is asserted inside)."""
    from memory_models.eval.benchmarks.autoencoder import bench_mixer_vs_llama, bench_unroll

    unroll = bench_unroll(batch=2, length=40, hidden=16, repeats=1, calibrate=False)
    assert unroll["gather_ms"]["median"] > 0 and unroll["loop_ms"]["runs"] == 1
    speed = bench_mixer_vs_llama(repeats=1, batch=1, length=8, hidden=16, layers=1, vocab_size=50)
    assert speed["mixer_tokens_per_s"]["median"] > 0 and speed["llama_tokens_per_s"]["runs"] == 1
    assert speed["mixer_params"] > 0
