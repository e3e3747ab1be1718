"""Tiny memory autoencoders (and retention probes) for the shared checks."""

import torch
from transformers import BertConfig, LlamaConfig

from model_tester import ModelCase
from memory_models.modeling_memory import MaskedMixerConfig, MemoryAutoencoder, MemoryAutoencoderConfig

VOCAB = 99
LENGTH = 16
SPECIAL = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)


def llama_block(hidden: int = 32, **overrides) -> LlamaConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=LENGTH, **SPECIAL)
    return LlamaConfig(**{**kwargs, **overrides})


def mixer_block(**overrides) -> MaskedMixerConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, max_position_embeddings=LENGTH,
                  kernel_size=2, **SPECIAL)
    return MaskedMixerConfig(**{**kwargs, **overrides})


def bert_block(**overrides) -> BertConfig:
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    return BertConfig(**{**kwargs, **overrides})


def autoencoder(encoder, decoder=None, **overrides) -> MemoryAutoencoder:
    decoder = decoder if decoder is not None else encoder.to_dict()
    return MemoryAutoencoder(
        MemoryAutoencoderConfig(encoder, decoder, max_position_embeddings=LENGTH, **{**SPECIAL, **overrides})
    )


def token_inputs(batch: int, length: int = 12) -> dict:
    return {"input_ids": torch.randint(2, VOCAB, (batch, length))}


def case(name, build, contract: bool = False) -> ModelCase:
    return ModelCase(name, build, token_inputs, auto_class="AutoModel", output_key="logits", labels_key="labels",
                     contract=contract)


CASES = [
    case("autoencoder_llama_unroll", lambda: autoencoder(llama_block()), contract=True),
    case("autoencoder_mixer_repeat_penultimate",
         lambda: autoencoder(mixer_block(), expansion="repeat", pooling="penultimate"), contract=True),
    case("autoencoder_compression_bridge",
         lambda: autoencoder(llama_block(32), llama_block(16), compression=2, pooling="last_nonpad")),
    case("autoencoder_frozen_encoder", lambda: autoencoder(llama_block(), freeze_encoder=True)),
    case("autoencoder_bert_encoder",
         lambda: autoencoder(bert_block(), llama_block(), pass_attention_mask_to_encoder=False), contract=True),
    case("autoencoder_bert_frozen_fresh_embedding",
         lambda: autoencoder(bert_block(), llama_block(), freeze_encoder=True, fresh_encoder_embedding=True)),
]
