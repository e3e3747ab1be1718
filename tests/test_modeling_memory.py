"""Model-specific tests of MemoryModel / MemoryForCausalLM (tiny configs: d=32, 2 layers, chunk 4, 4 slots)."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, LlamaForCausalLM

from cases_memory import CHUNK, SLOTS, VOCAB, memory_config, randomize_positions
from memory_models.modeling_memory import LOSS_STREAMS, MemoryForCausalLM, MemoryModel

VARIANTS = {
    "llama_fixed_ones": dict(filler="ones"),
    "llama_fixed_zeros": dict(filler="zeros"),
    "llama_fixed_masked": dict(filler="masked"),
    "llama_fixed_learned": dict(filler="learned"),
    "llama_variable": dict(memory_layout="variable", filler="masked"),
    "llama_learned_positions": dict(filler="masked", position_embedding="learned"),
    "llama_penultimate_c2_w16": dict(pooling="penultimate", compression=2, encoder_hidden=16),
    "mixer_mixer": dict(encoder="mixer", decoder="mixer", encoder_hidden=16),
    "mixer_enc_llama_dec": dict(encoder="mixer", filler="ones"),
    "llama_enc_mixer_dec": dict(decoder="mixer", filler="learned"),
}


def build(seed: int = 0, cls=MemoryForCausalLM, **kw):
    torch.manual_seed(seed)
    return randomize_positions(cls(memory_config(**kw))).eval()


def ids_of(batch: int, length: int, seed: int = 1) -> torch.LongTensor:
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model, ids, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, **kw).logits


@pytest.mark.parametrize("variant", VARIANTS)
def test_key_identity(variant):
    """`model(ids).logits[:, T:]` equals decoding `ids[:, T:]` after `memory_embeds=encode(ids[:, :T])`."""
    model, ids = build(**VARIANTS[variant]), ids_of(2, 15)
    full = logits(model, ids)
    for split in (CHUNK, 2 * CHUNK, 3 * CHUNK):
        memories = model.encode(ids[:, :split])
        assert memories.shape == (2, split // CHUNK, 32)
        torch.testing.assert_close(logits(model, ids[:, split:], memory_embeds=memories), full[:, split:])


@pytest.mark.parametrize("variant", ["llama_fixed_masked", "llama_variable", "mixer_mixer"])
def test_key_identity_left_padding(variant):
    """The key identity holds in a left-padded batch; rows with fewer memories get a memory mask."""
    model, ids = build(**VARIANTS[variant]), ids_of(3, 16)
    mask = torch.ones_like(ids)
    mask[1, :CHUNK] = 0  # one chunk of left padding
    mask[2, : 2 * CHUNK] = 0  # two chunks: no memory before the split for this row
    full = logits(model, ids, attention_mask=mask)
    split = 2 * CHUNK
    memories, memory_mask = model.encode(ids[:, :split], mask[:, :split], return_attention_mask=True)
    assert memory_mask.tolist() == [[1, 1], [0, 1], [0, 0]]
    with pytest.raises(ValueError, match="different numbers of complete chunks"):
        model.encode(ids[:, :split], mask[:, :split])
    got = logits(model, ids[:, split:], memory_embeds=memories, memory_attention_mask=memory_mask)
    torch.testing.assert_close(got, full[:, split:])


@pytest.mark.parametrize("variant", ["llama_fixed_ones", "llama_variable", "mixer_mixer", "llama_enc_mixer_dec"])
def test_causality(variant):
    """Changing token t changes no logit before t and changes the logits from t on."""
    model, ids = build(**VARIANTS[variant]), ids_of(1, 15)
    base = logits(model, ids)
    for t in (0, 3, 4, 9, 14):
        changed = ids.clone()
        changed[0, t] = (changed[0, t] + 7) % (VOCAB - 2) + 2
        other = logits(model, changed)
        torch.testing.assert_close(other[:, :t], base[:, :t], rtol=0, atol=0)
        assert (other[:, t:] - base[:, t:]).abs().amax() > 1e-4


@pytest.mark.parametrize("variant", ["llama_fixed_ones", "llama_fixed_masked", "llama_variable", "mixer_mixer"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_invariance(variant, side):
    """Each row of a left- or right-padded batch gives the same logits and loss as the row alone."""
    model = build(**VARIANTS[variant])
    lengths, width = [14, 9, 5, 1], 14
    rows = [ids_of(1, n, seed=n)[0] for n in lengths]
    ids = torch.full((len(rows), width), 1)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[r, cols], mask[r, cols] = row, 1
    labels = ids.masked_fill(mask == 0, -100)
    batched = logits(model, ids, attention_mask=mask)
    for r, row in enumerate(rows):
        alone = logits(model, row[None])[0]
        cols = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        torch.testing.assert_close(batched[r, cols], alone, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            loss_batched = model(ids[r : r + 1], attention_mask=mask[r : r + 1], labels=labels[r : r + 1]).loss
            if len(row) > 1:
                torch.testing.assert_close(loss_batched, model(row[None], labels=row[None]).loss)


def _llama_copy(model) -> LlamaForCausalLM:
    llama = LlamaForCausalLM(model.config.decoder_config).eval()
    llama.load_state_dict(model.decoder.state_dict())
    return llama


@pytest.mark.parametrize("layout", ["fixed", "variable"])
def test_llama_parity_without_memories(layout):
    """Masked filler and no memories: the model's logits are LlamaForCausalLM's on the same decoder weights."""
    model = build(filler="masked", memory_layout=layout)
    llama, ids = _llama_copy(model), ids_of(2, CHUNK)
    for length in (1, 3, CHUNK):
        torch.testing.assert_close(logits(model, ids[:, :length]), logits(llama, ids[:, :length]))


def test_llama_parity_no_memory_per_chunk():
    """With no_memory=True, every chunk of a multi-chunk input is decoded exactly like Llama on that chunk alone."""
    model = build(filler="masked", no_memory=True)
    assert model.encoder is None
    llama, ids = _llama_copy(model), ids_of(2, 15)
    full = logits(model, ids)
    for start in range(0, 15, CHUNK):
        chunk = ids[:, start : start + CHUNK]
        torch.testing.assert_close(full[:, start : start + CHUNK], logits(llama, chunk))


def test_runtime_no_memory_ablation():
    """Setting config.no_memory on a trained model skips the encoder: all slots hold the filler."""
    model, ids = build(filler="ones"), ids_of(2, 12)
    model.config.no_memory = True
    ablated = logits(model, ids)
    for start in range(0, 12, CHUNK):
        torch.testing.assert_close(ablated[:, start : start + CHUNK], logits(model, ids[:, start : start + CHUNK]))
    model.config.no_memory = False
    assert (logits(model, ids)[:, CHUNK:] - ablated[:, CHUNK:]).abs().amax() > 1e-4


def _reference_paper_forward(model, ids, labels):
    """The paper's SEQUENTIAL loop (spec §4.3-4.4), from the model's submodules: s-1 encoder calls, s decoder
    calls, within-chunk targets, per-chunk mean CE (all-masked chunks skipped), sum divided by s."""
    config, slots = model.config, model.config.num_memory_slots
    s, length = ids.shape[1] // CHUNK, CHUNK
    memories = []
    for j in range(s - 1):  # the last chunk is never encoded
        hidden = model.encoder(input_ids=ids[:, j * length : (j + 1) * length]).last_hidden_state
        memories.append(hidden[:, -1])
    embed, total, chunk_logits = model.decoder.get_input_embeddings(), 0.0, []
    for c in range(s):
        tokens = embed(ids[:, c * length : (c + 1) * length])
        previous = [m[:, None] for m in memories[:c]]
        if config.memory_layout == "fixed":
            fill = torch.ones(ids.shape[0], slots - c, tokens.shape[-1])
            x = torch.cat(previous + [fill, tokens], dim=1)
        else:
            x = torch.cat(previous + [tokens], dim=1)
        hidden = model.decoder.model(inputs_embeds=x).last_hidden_state
        chunk_out = model.decoder.lm_head(hidden[:, -length:])
        chunk_logits.append(chunk_out)
        target = labels[:, c * length + 1 : (c + 1) * length]
        if (target != -100).any():
            total = total + F.cross_entropy(chunk_out[:, :-1].flatten(0, 1), target.flatten(), ignore_index=-100)
    return total / s, torch.cat(chunk_logits, dim=1)


@pytest.mark.parametrize("layout", ["fixed", "variable"])
def test_paper_equivalence(layout):
    """The batched model with paper targets and reduction equals the paper's sequential reference loop."""
    model = build(filler="ones", memory_layout=layout, paper_chunk_targets=True, loss_reduction="paper")
    ids = ids_of(3, 4 * CHUNK)
    labels = ids.clone()
    labels[0, 5:7] = -100
    labels[:, 2 * CHUNK : 3 * CHUNK] = -100  # an all-masked chunk is skipped but still counted in s
    with torch.no_grad():
        out = model(ids, labels=labels)
        ref_loss, ref_logits = _reference_paper_forward(model, ids, labels)
    torch.testing.assert_close(out.loss, ref_loss)
    torch.testing.assert_close(out.logits, ref_logits)


@pytest.mark.parametrize("reduction", ["token_mean", "paper"])
def test_combined_objective_stream_weights(reduction):
    """With stream_ids, the loss is clm_w * L(causal rows) + copy_w * L(copy rows), each reduced on its own."""
    model = build(filler="ones", loss_reduction=reduction, clm_loss_weight=0.7, copy_loss_weight=0.5)
    ids = ids_of(4, 14)
    labels = ids.clone()
    labels[2:, :8] = -100  # copy rows: targets only in the second half
    stream_ids = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        combined = model(ids, labels=labels, stream_ids=stream_ids).loss
        clm = model(ids[:2], labels=labels[:2]).loss
        copy = model(ids[2:], labels=labels[2:]).loss
    torch.testing.assert_close(combined, 0.7 * clm + 0.5 * copy)


def test_paper_reduction_halves_copy_loss():
    """Paper reduction over s=4 chunks with copy targets in 2 chunks gives half the per-chunk-mean copy loss."""
    model = build(filler="ones", loss_reduction="paper")
    ids, labels = ids_of(2, 16), ids_of(2, 16).clone()
    labels[:, :9] = -100  # targets (by prediction position) only in chunks 2 and 3
    with torch.no_grad():
        out = model(ids, labels=labels)
    targets = labels[:, 1:]
    ce = F.cross_entropy(out.logits[:, :-1].transpose(1, 2), targets, reduction="none", ignore_index=-100)
    per_chunk = [ce[:, c * CHUNK : (c + 1) * CHUNK][targets[:, c * CHUNK : (c + 1) * CHUNK] != -100].mean()
                 for c in (2, 3)]
    torch.testing.assert_close(out.loss, sum(per_chunk) / 4)


def test_default_targets_cross_chunk_boundaries():
    """Default loss: the token mean of the ordinary causal shift, chunk-boundary targets included."""
    model, ids = build(), ids_of(2, 14)
    with torch.no_grad():
        out = model(ids, labels=ids)
    expected = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)


def test_training_mode_head_on_targets_only():
    """In training mode with labels, logits are None and the loss equals the eval-mode loss."""
    model, ids = build(), ids_of(2, 14)
    labels = ids.masked_fill(torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -100)
    with torch.no_grad():
        expected = model(ids, labels=labels).loss
    model.train()
    out = model(ids, labels=labels)
    assert out.logits is None
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("variant", ["llama_fixed_ones", "llama_variable", "llama_learned_positions", "mixer_mixer"])
def test_training_decodes_only_the_chunks_with_targets(variant, monkeypatch):
    """Training with labels runs the decoder on the chunks that have a target only (a copy row's first half has
    none), with the loss and every gradient of decoding all chunks; a left-padded row keeps its own chunks."""
    model, ids = build(**VARIANTS[variant]), ids_of(3, 4 * CHUNK)
    mask = torch.ones_like(ids)
    mask[1, :CHUNK] = 0  # left padding: the row's chunks are rolled
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, : 2 * CHUNK] = -100  # targets from position 2*CHUNK - 1 on (it predicts token 2*CHUNK)
    labels[2] = -100  # one row without any target
    model.train()
    rows = []
    hook = model.decoder.model.register_forward_pre_hook(lambda m, a, kw: rows.append(kw["inputs_embeds"].shape[0]),
                                                         with_kwargs=True)

    def loss_and_grads(skip):
        monkeypatch.setattr(MemoryForCausalLM, "decode_only_chunks_with_targets", skip)
        model.zero_grad()
        loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(True)
    all_loss, all_grads = loss_and_grads(False)
    hook.remove()
    # row 0: targets in its chunks 1 (last position), 2 and 3; row 1, rolled left by its padding chunk: chunks 0-2;
    # row 2: none. Decoding all: 3 rows x 4 chunks.
    assert rows == [6, 3 * 4]
    torch.testing.assert_close(loss, all_loss)
    assert grads.keys() == all_grads.keys() and any(g.abs().sum() > 0 for g in grads.values())
    for name in grads:
        torch.testing.assert_close(grads[name], all_grads[name], msg=name)


@pytest.mark.parametrize("reduction", ["token_mean", "paper"])
def test_no_valid_targets_zero_loss(reduction):
    """No valid target at all: the loss is 0 (never NaN) and still backpropagates."""
    model = build(loss_reduction=reduction).train()
    ids = ids_of(2, 10)
    loss = model(ids, labels=torch.full_like(ids, -100), stream_ids=torch.tensor([0, 1])).loss
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()


def test_value_errors():
    """Bad inputs raise ValueErrors that name the numbers."""
    model, ids = build(), ids_of(2, 8)
    with pytest.raises(ValueError, match=r"\[batch, n_memories, 32\]"):
        model(ids, memory_embeds=torch.zeros(2, 1, 16))
    with pytest.raises(ValueError, match="5 memories given.*num_memory_slots=4"):
        model(ids[:, :2], memory_embeds=torch.zeros(2, 5, 32))
    with pytest.raises(ValueError, match="17 tokens.*max_position_embeddings=16"):
        model(ids_of(1, 17))
    with pytest.raises(ValueError, match="8 tokens after 3 memories"):
        model(ids, memory_embeds=torch.zeros(2, 3, 32))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(ids, inputs_embeds=torch.zeros(2, 8, 32))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="stream_ids"):
        model(ids, labels=ids, stream_ids=torch.tensor([0, len(LOSS_STREAMS)]))  # one past the last stream


def test_inputs_embeds():
    """inputs_embeds match input_ids within one chunk; longer inputs need ids for the encoder."""
    model, ids = build(), ids_of(2, CHUNK)
    embeds = model.get_input_embeddings()(ids)
    torch.testing.assert_close(logits(model, None, inputs_embeds=embeds), logits(model, ids))
    with pytest.raises(ValueError, match="encoder reads token ids"):
        model(inputs_embeds=model.get_input_embeddings()(ids_of(2, 8)))


def test_generate_from_inputs_embeds_stays_in_the_prompt_chunk():
    """generate(inputs_embeds=...) works inside the prompt's chunk (common contract tests); crossing into the next
    chunk would need the prompt's token ids for the encoder: a ValueError says so, as does a longer prompt."""
    model = build()
    embeds = model.get_input_embeddings()(ids_of(2, 3)).detach()
    with pytest.raises(ValueError, match="cannot cross a chunk boundary"):
        model.generate(inputs_embeds=embeds, max_new_tokens=4, do_sample=False, pad_token_id=1)
    with pytest.raises(ValueError, match="encoder reads token ids"):
        model.generate(inputs_embeds=model.get_input_embeddings()(ids_of(2, 6)).detach(), max_new_tokens=1,
                       do_sample=False, pad_token_id=1)
    no_memory = build(no_memory=True)  # nothing to encode: any length
    out = no_memory.generate(inputs_embeds=no_memory.get_input_embeddings()(ids_of(2, 3)).detach(), max_new_tokens=6,
                             do_sample=False, pad_token_id=1)
    assert out.shape == (2, 6)


def test_shift_labels_counts_match_labels():
    """`loss_target_counts` (the Trainer's num_items_in_batch) counts pre-shifted targets like shifted labels."""
    model = build(paper_chunk_targets=True, loss_reduction="paper")
    ids = ids_of(2, 14)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded row
    labels = ids.masked_fill(mask == 0, -100)
    shifted = F.pad(labels[:, 1:], (0, 1), value=-100)  # as the Trainer shifts them (a pad predicts the first token)
    counts = model.loss_target_counts(labels, mask)
    assert torch.equal(model.loss_target_counts(None, mask, shift_labels=shifted), counts)
    torch.testing.assert_close(model(ids, attention_mask=mask, shift_labels=shifted).loss,
                               model(ids, attention_mask=mask, labels=labels).loss)


def _encoder_grad_modes(model):
    modes = []
    model.encoder.register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
    return modes


def test_frozen_encoder(tmp_path):
    """A frozen encoder runs without grad, gets no gradient and is bit-identical after an optimiser step."""
    model = build(freeze_encoder=True).train()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    modes = _encoder_grad_modes(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = ids_of(2, 14)
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    assert modes == [False]
    assert all(p.grad is None for p in model.encoder.parameters())
    for name, param in model.encoder.named_parameters():
        assert torch.equal(param, before[name]), name
    model.save_pretrained(tmp_path)
    reloaded = MemoryForCausalLM.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in reloaded.encoder.parameters())
    assert all(p.requires_grad for p in reloaded.decoder.parameters())


def test_fresh_encoder_embedding(tmp_path):
    """fresh_encoder_embedding trains only the encoder's token embedding, with gradients through frozen blocks."""
    model = build(fresh_encoder_embedding=True, freeze_encoder=True).train()
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert trainable == ["embed_tokens.weight"]
    modes = _encoder_grad_modes(model)
    ids = ids_of(2, 14)
    model(ids, labels=ids).loss.backward()
    assert modes == [True]
    assert model.encoder.embed_tokens.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.encoder.named_parameters() if n != "embed_tokens.weight")
    model.save_pretrained(tmp_path)
    reloaded = MemoryForCausalLM.from_pretrained(tmp_path)
    assert [n for n, p in reloaded.encoder.named_parameters() if p.requires_grad] == ["embed_tokens.weight"]


def test_one_freezing_api_for_memory_model_and_autoencoder(tmp_path):
    """Both encoder families freeze through the same `apply_freezing`: after anything that unfreezes the encoder
    (a loader, a copied encoder) it restores the config's freezing, and a frozen encoder stays in eval mode."""
    from cases_autoencoder import autoencoder, llama_block
    from memory_models.training.train import copy_encoder

    memory = build(fresh_encoder_embedding=True)  # the paper's variant: frozen blocks, trainable embedding
    source = autoencoder(llama_block())
    source.save_pretrained(tmp_path)
    for model in (memory, autoencoder(llama_block(), freeze_encoder=True, fresh_encoder_embedding=True)):
        model.encoder.requires_grad_(True)
        model.train()
        assert not model.encoder.training
        model.apply_freezing()
        assert [n for n, p in model.encoder.named_parameters() if p.requires_grad] == ["embed_tokens.weight"]
    memory.encoder.requires_grad_(True)
    copy_encoder(memory, str(tmp_path))  # train.py re-applies the freezing after copying an encoder in
    assert [n for n, p in memory.encoder.named_parameters() if p.requires_grad] == ["embed_tokens.weight"]


def test_compression_and_projection():
    """compression c adds a d -> d/c -> d bottleneck; a narrower encoder adds the projection to d_dec."""
    model = build(compression=4, encoder_hidden=16)
    assert model.memory_compress.weight.shape == (4, 16) and model.memory_expand.weight.shape == (16, 4)
    assert model.memory_projection.weight.shape == (32, 16)
    assert model.encode(ids_of(2, 9)).shape == (2, 2, 32)
    plain = build()
    assert plain.memory_compress is None and plain.memory_projection is None and plain.filler is None


def test_encode_shapes_and_errors():
    """encode() returns one memory per complete chunk; it needs an encoder."""
    model = build()
    assert model.encode(ids_of(3, 3)).shape == (3, 0, 32)
    assert model.encode(ids_of(3, 14)).shape == (3, 3, 32)
    out = model(ids_of(3, 10), memory_embeds=model.encode(ids_of(3, 4)))
    assert out.memory_embeds.shape == (3, 1 + 2, 32)  # given, then those of chunks 0..k-2
    with pytest.raises(ValueError, match="no encoder"):
        build(encoder=None).encode(ids_of(1, 8))


def test_tied_decoder_embeddings_survive_save_load(tmp_path):
    """A decoder with tied embeddings (like Llama-3.2-1B) stays tied after save/load."""
    torch.manual_seed(0)
    config = memory_config(filler="masked")
    config.decoder_config.tie_word_embeddings = True
    model = MemoryForCausalLM(config).eval()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    reloaded = MemoryForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight
    ids = ids_of(2, 10)
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), rtol=0, atol=0)


def test_auto_model_loads_causal_lm_folder(tmp_path):
    """AutoModel on a MemoryForCausalLM folder gives a MemoryModel whose hidden states feed the same head. The head
    class is its own base model (transformers' test_model_base_model_prefix does not apply): same modules."""
    model, ids = build(), ids_of(2, 14)
    assert model.base_model is model
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is MemoryModel
    with torch.no_grad():
        hidden = base(ids).last_hidden_state
    torch.testing.assert_close(model.decoder.lm_head(hidden), logits(model, ids))
