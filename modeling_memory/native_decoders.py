"""Native transformers decoder-only models (Llama 3.x, Qwen2/3, Mistral, Gemma, ...) as memory-model decoders.

A memory model drives its decoder through the public arguments `inputs_embeds`, `position_ids` and
`attention_mask` of the decoder's base model (`decoder.model`) and applies `decoder.lm_head` itself, so any
causal LM that transformers ships with that interface works. Pretrained weights are attached without
materialising a random copy first (see [`attach_pretrained_decoder`]).
"""

import inspect

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from .config_utils import DECODER_INPUTS, check_decoder_config


def check_native_decoder(decoder: nn.Module) -> None:
    """Raise a `ValueError` naming the model_type unless `decoder` has `.model` and `.lm_head` and its base model
    accepts `inputs_embeds`, `position_ids` and `attention_mask`."""
    model_type = getattr(getattr(decoder, "config", None), "model_type", type(decoder).__name__)
    body, head = getattr(decoder, "model", None), getattr(decoder, "lm_head", None)
    if not isinstance(body, nn.Module) or not isinstance(head, nn.Module):
        raise ValueError(f"decoder of model_type {model_type!r} ({type(decoder).__name__}) has no `.model` base "
                         "model and `.lm_head`: it cannot be a memory-model decoder")
    accepted = inspect.signature(body.forward).parameters
    missing = [name for name in DECODER_INPUTS if name not in accepted]
    if missing:
        raise ValueError(f"decoder of model_type {model_type!r}: {type(body).__name__}.forward does not accept "
                         f"{missing}, which a memory model needs")


def build_native_decoder(config: PretrainedConfig) -> nn.Module:
    """A randomly initialised native causal LM for `config` (checked to be drivable)."""
    check_decoder_config(config)
    decoder = AutoModelForCausalLM.from_config(config)
    check_native_decoder(decoder)
    return decoder


def same_architecture(expected: PretrainedConfig, actual: PretrainedConfig, fields=None) -> list[str]:
    """`field: expected != actual` for every shape-defining field where the two configs differ."""
    fields = fields or ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                        "num_attention_heads", "num_key_value_heads", "kernel_size")
    return [f"{name}: {getattr(expected, name, None)} != {getattr(actual, name, None)}" for name in fields
            if getattr(expected, name, None) != getattr(actual, name, None)]


def attach_pretrained_decoder(cls, decoder: nn.Module, config, encoder: nn.Module | None = None):
    """A `cls(config)` whose decoder IS `decoder` (no copy) and whose encoder is `encoder` or freshly initialised.

    The model is built on the meta device, so no random decoder is ever materialised; only the small new parts
    (encoder unless given, memory bottleneck/projection, learned filler, learned decoder positions: zeros, so the
    decoder starts out exactly as it was) are created, in the decoder's dtype.
    """
    check_native_decoder(decoder)
    if config.decoder_config is not decoder.config:
        raise ValueError("config.decoder_config must be the decoder's own config object")
    if encoder is not None:
        problems = same_architecture(config.encoder_config, encoder.config)
        if problems:
            raise ValueError(f"the encoder does not match encoder_config (config != encoder): {problems}")
    dtype = next(decoder.parameters()).dtype
    with torch.device("meta"):
        model = cls(config)
    model.decoder = decoder
    if model.encoder is not None:
        if encoder is None:
            with torch.device(next(decoder.parameters()).device):
                encoder = type(model.encoder)(config.encoder_config)  # its own post_init initialises it
        model.encoder = encoder.to(dtype)
    std = config.initializer_range
    for name in ("memory_compress", "memory_expand", "memory_projection"):
        layer = getattr(model, name)
        if layer is not None:
            fresh = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
            nn.init.normal_(fresh.weight, mean=0.0, std=std)
            nn.init.zeros_(fresh.bias)
            setattr(model, name, fresh)
    if isinstance(model.filler, nn.Parameter):
        model.filler = nn.Parameter(torch.empty(config.decoder_config.hidden_size, dtype=dtype).normal_(0.0, std))
    if model.decoder_position_embeddings is not None:
        table = model.decoder_position_embeddings
        model.decoder_position_embeddings = nn.Embedding(table.num_embeddings, table.embedding_dim, dtype=dtype)
        nn.init.zeros_(model.decoder_position_embeddings.weight)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"parameters left on the meta device after attaching the decoder: {left[:5]}")
    model.config.dtype = dtype
    model.apply_freezing()
    return model
