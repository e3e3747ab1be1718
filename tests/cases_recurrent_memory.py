"""Tiny recurrent memory transformers (RMT baseline) for the shared checks."""

import torch

from model_tester import ModelCase
from memory_models.modeling_memory import MaskedMixerConfig, RecurrentMemoryConfig, RecurrentMemoryForCausalLM
from transformers import LlamaConfig

VOCAB = 99
CHUNK = 4


def recurrent_config(decoder: str = "llama", **overrides) -> RecurrentMemoryConfig:
    """Chunk 4, up to 4 segments, one memory token unless overridden; a 2-layer, 32-wide decoder."""
    kwargs = dict(chunk_size=CHUNK, max_segments=4, num_memory_tokens=1)
    kwargs.update(overrides)
    m = kwargs["num_memory_tokens"]
    write = m if kwargs.get("write_position", "append") == "append" else 0
    positions = m + CHUNK + write
    if decoder == "llama":
        decoder_config = LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=positions, pad_token_id=1, bos_token_id=0, eos_token_id=1,
        )
    else:
        decoder_config = MaskedMixerConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, max_position_embeddings=positions
        )
    return RecurrentMemoryConfig(decoder_config, **kwargs)


def recurrent_model(decoder: str = "llama", **overrides) -> RecurrentMemoryForCausalLM:
    return RecurrentMemoryForCausalLM(recurrent_config(decoder, **overrides))


def token_inputs(batch: int, length: int = 14) -> dict:
    """14 tokens = 3 full segments of 4 and a partial one."""
    return {"input_ids": torch.randint(2, VOCAB, (batch, length))}


CASES = [
    ModelCase("recurrent_memory_llama_append", lambda: recurrent_model(), token_inputs, contract=True),
    ModelCase(
        "recurrent_memory_llama_learned_2tokens",
        lambda: recurrent_model(filler="learned", num_memory_tokens=2),
        token_inputs,
    ),
    ModelCase("recurrent_memory_llama_last_token", lambda: recurrent_model(write_position="last_token"), token_inputs,
              contract=True),
    ModelCase(
        "recurrent_memory_mixer_zeros", lambda: recurrent_model("masked_mixer", filler="zeros"), token_inputs,
        contract=True,
    ),
]
