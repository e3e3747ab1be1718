"""`MemoryConfig.position_embedding="learned"`: a learned embedding of each decoder position of a chunk (slots, then
tokens), added to the decoder's input in `run_decoder`. Forward, generation, caches and the rolling window are
covered by the shared checks and the layout tests (cases with a random table); here: what the option changes and
where it goes (zero start, conversion, LoRA, decoder extraction)."""

import logging

import pytest
import torch

from cases_memory import CHUNK, SLOTS, VOCAB, memory_config, randomize_positions
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM
from memory_models.training.lora import apply_lora


def ids_of(batch, length, seed=1):
    return torch.randint(2, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def pair():
    """The same weights with and without the option (the table starts at zero)."""
    torch.manual_seed(0)
    plain = MemoryForCausalLM(memory_config(filler="ones"))
    learned = MemoryForCausalLM(memory_config(filler="ones", position_embedding="learned"))
    missing, unexpected = learned.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["decoder_position_embeddings.weight"] and unexpected == []
    return plain, learned


def test_a_fresh_table_is_zero_and_changes_nothing():
    """The table has one row per decoder position (S + L), starts at zero, and then gives exactly the logits and the
    loss of the model without it; a non-zero table changes the logits of every chunk."""
    plain, learned = pair()
    table = learned.decoder_position_embeddings.weight
    assert table.shape == (SLOTS + CHUNK, 32) and torch.count_nonzero(table) == 0
    ids = ids_of(2, 3 * CHUNK)
    torch.testing.assert_close(learned(ids, labels=ids).loss, plain(ids, labels=ids).loss)
    with torch.no_grad():
        before = plain(ids).logits
        torch.testing.assert_close(learned.eval()(ids).logits, before)
        randomize_positions(learned)
        after = learned(ids).logits
    for chunk in range(3):
        columns = slice(chunk * CHUNK, (chunk + 1) * CHUNK)
        assert not torch.allclose(after[:, columns], before[:, columns])


def test_the_table_learns_where_the_loss_needs_it():
    """One backward pass gives every row of the table a gradient (slots read by attention, and token rows)."""
    _, learned = pair()
    ids = ids_of(2, 3 * CHUNK)
    learned.train()(ids, labels=ids).loss.backward()
    grad = learned.decoder_position_embeddings.weight.grad
    assert grad is not None and bool((grad.abs().sum(-1) > 0).all())


def test_unknown_values_are_refused():
    """A value other than none / learned is a ValueError naming the field and the choices."""
    with pytest.raises(ValueError, match="position_embedding.*'rotary'"):
        memory_config(position_embedding="rotary")
    saved = memory_config().to_dict()
    saved.pop("position_embedding")  # a config.json written before the option existed
    assert MemoryConfig.from_dict(saved).position_embedding == "none"


def test_lora_keeps_the_table_trainable():
    """With LoRA on the decoder, the position table trains in full (modules_to_save) beside the adapters."""
    _, learned = pair()
    peft = apply_lora(learned, r=2)
    names = [name for name, p in peft.named_parameters() if p.requires_grad and "decoder_position_embeddings" in name]
    assert names and all("modules_to_save" in name for name in names)
