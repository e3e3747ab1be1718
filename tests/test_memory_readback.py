"""Memories carry their chunk: the memory path reads back what a frozen autoencoder's encoder holds (paper §5.3).

A tiny masked-mixer autoencoder learns to reconstruct 4-token chunks of a synthetic vocabulary; a memory model
with exactly that encoder, frozen, and a fresh decoder trained only on blank copy (the decoder sees blanks, so
every target must come from the memories) must then read every chunk back. A memory in the wrong slot, a
label off by one, or an encoder that differs from the autoencoder's (embedding, pooled position, dropout)
would cap the read-back far below 100%.
"""

import pytest
import torch
from transformers import LlamaConfig

from memory_models.modeling_memory import (MaskedMixerConfig, MemoryAutoencoder, MemoryAutoencoderConfig, MemoryConfig,
                             MemoryForCausalLM)
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.copy import copy_batch

VOCAB, CHUNK, SLOTS, HIDDEN = 20, 4, 4, 32
BOS, BLANK, DELIMITER, FIRST_TOKEN = 0, 1, 2, 3  # synthetic tokens are FIRST_TOKEN .. VOCAB-1
SPECIAL = dict(pad_token_id=BLANK, bos_token_id=BOS, eos_token_id=BLANK)
STEPS, BATCH = 150, 64


def mixer(length: int) -> MaskedMixerConfig:
    return MaskedMixerConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, max_position_embeddings=length,
                             kernel_size=CHUNK, **SPECIAL)


def tokens(generator, rows: int, length: int) -> torch.LongTensor:
    return torch.randint(FIRST_TOKEN, VOCAB, (rows, length), generator=generator)


def fit(model, make_batch, steps: int = STEPS, lr: float = 5e-3) -> None:
    """AdamW with warmup and linear decay on freshly drawn synthetic batches."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 30) * (1 - s / steps))
    model.train()
    for _ in range(steps):
        model(**make_batch()).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()


def blank_copy(generator, rows: int) -> dict:
    """Blank-copy rows of `SLOTS` chunks: two chunks of tokens, then a delimiter and blanks."""
    settings = CopySettings(blank=True, blank_token_id=BLANK, delimiter_token_id=DELIMITER, delimiter_length=1)
    batch = copy_batch(tokens(generator, rows, SLOTS * CHUNK), settings=settings)
    batch.pop("stream_ids")
    return batch


def frozen_encoder_memory_model(autoencoder, decoder_config, filler: str) -> MemoryForCausalLM:
    config = MemoryConfig(autoencoder.config.encoder_config, decoder_config, chunk_size=CHUNK, num_memory_slots=SLOTS,
                          filler=filler, freeze_encoder=True, blank_token_id=BLANK, copy_delimiter_token_id=DELIMITER,
                          copy_delimiter_length=1, **SPECIAL)
    model = MemoryForCausalLM(config)
    model.encoder.load_state_dict(autoencoder.encoder.state_dict())
    return model


@pytest.fixture(scope="module")
def autoencoder():
    """A mixer autoencoder trained to reconstruct 4-token chunks (a few seconds on 2 CPU cores)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    block = mixer(CHUNK)
    model = MemoryAutoencoder(MemoryAutoencoderConfig(block, block.to_dict(), max_position_embeddings=CHUNK,
                                                      expansion="unroll", **SPECIAL))

    def batch():
        ids = tokens(generator, BATCH, CHUNK)
        return {"input_ids": ids, "labels": ids}

    fit(model, batch)
    return model


@pytest.mark.parametrize("family", ["mixer", "llama"])
def test_frozen_encoder_gives_the_autoencoders_memories(family):
    """`encode` of a memory model with an autoencoder's frozen encoder = the autoencoder's own pooled embedding,
    chunk by chunk, also while the memory model trains (a frozen encoder runs without dropout)."""
    torch.manual_seed(0)
    if family == "mixer":
        block = mixer(CHUNK)
    else:
        block = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=CHUNK,
                            attention_dropout=0.5, **SPECIAL)
    autoencoder = MemoryAutoencoder(MemoryAutoencoderConfig(block, block.to_dict(), max_position_embeddings=CHUNK,
                                                            **SPECIAL)).eval()
    decoder = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=CHUNK + SLOTS, **SPECIAL)
    model = frozen_encoder_memory_model(autoencoder, decoder, "ones").train()
    ids = tokens(torch.Generator().manual_seed(1), 3, SLOTS * CHUNK)
    with torch.no_grad():
        hidden = autoencoder.encoder(input_ids=ids.view(-1, CHUNK)).last_hidden_state
    expected = autoencoder.pool(hidden, None).view(3, SLOTS, HIDDEN)
    torch.testing.assert_close(model.encode(ids), expected)


def test_blank_copy_reads_back_a_frozen_autoencoder_encoder(autoencoder):
    """The identity: the autoencoder reconstructs >= 99% of a chunk, so blank copy through its frozen encoder must
    reach near-perfect held-out accuracy; a decoder with position-specific mixing learns it in 150 steps."""
    generator = torch.Generator().manual_seed(1)
    held_out = tokens(generator, 512, CHUNK)
    with torch.no_grad():
        reconstruction = (autoencoder(input_ids=held_out).logits.argmax(-1) == held_out).float().mean().item()
    assert reconstruction >= 0.99
    torch.manual_seed(0)
    model = frozen_encoder_memory_model(autoencoder, mixer(CHUNK + SLOTS), "zeros")
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    fit(model, lambda: blank_copy(generator, BATCH))
    batch = blank_copy(generator, 512)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    assert int(scored.sum()) == 512 * 2 * CHUNK  # the whole copied half (a one-token delimiter hides no target)
    accuracy = ((logits[:, :-1].argmax(-1) == targets) & scored).sum().item() / scored.sum().item()
    assert accuracy >= 0.98, f"blank-copy read-back {accuracy:.3f} of an autoencoder at {reconstruction:.3f}"
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0)
