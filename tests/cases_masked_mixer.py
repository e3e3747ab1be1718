"""Tiny masked-mixer models for the shared checks."""

import torch

from model_tester import ModelCase
from memory_models.modeling_memory import MaskedMixerConfig, MaskedMixerForCausalLM, MaskedMixerModel

VOCAB = 99


def mixer_config(**overrides) -> MaskedMixerConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, max_position_embeddings=16)
    kwargs.update(overrides)
    return MaskedMixerConfig(**kwargs)


def token_inputs(batch: int, length: int = 12) -> dict:
    return {"input_ids": torch.randint(0, VOCAB, (batch, length))}


CASES = [
    ModelCase("masked_mixer_clm", lambda: MaskedMixerForCausalLM(mixer_config()), token_inputs, contract=True),
    ModelCase("masked_mixer_clm_k3", lambda: MaskedMixerForCausalLM(mixer_config(kernel_size=3)), token_inputs),
    ModelCase(
        "masked_mixer_clm_heads_tied",
        lambda: MaskedMixerForCausalLM(mixer_config(num_heads=2, kernel_size=2, tie_word_embeddings=True)),
        token_inputs,
    ),
    ModelCase(
        "masked_mixer_model",
        lambda: MaskedMixerModel(mixer_config()),
        token_inputs,
        auto_class="AutoModel",
        output_key="last_hidden_state",
        labels_key=None,
        contract=True,
    ),
]
