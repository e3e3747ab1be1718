"""Tiny memory models (MemoryConfig) for the shared checks: chunk 4, 4 slots, multi-chunk inputs."""

import dataclasses

import torch
from transformers import LlamaConfig

from model_tester import ModelCase
from memory_models.modeling_memory import MaskedMixerConfig, MemoryConfig, MemoryForCausalLM, MemoryModel

VOCAB, CHUNK, SLOTS = 99, 4, 4
SPECIAL = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)


def llama(hidden: int = 32, positions: int = CHUNK + SLOTS, **kw) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
                       **{**SPECIAL, **kw})


def mixer(hidden: int = 32, length: int = CHUNK + SLOTS, **kw) -> MaskedMixerConfig:
    return MaskedMixerConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2,
                             max_position_embeddings=length, **{**SPECIAL, **kw})


def memory_config(encoder="llama", decoder="llama", encoder_hidden=32, decoder_hidden=32, **kw) -> MemoryConfig:
    encoders = {"llama": lambda: llama(encoder_hidden, CHUNK), "mixer": lambda: mixer(encoder_hidden, CHUNK, kernel_size=2),
                None: lambda: None}
    decoders = {"llama": lambda: llama(decoder_hidden), "mixer": lambda: mixer(decoder_hidden)}
    if decoder == "mixer":
        kw.setdefault("filler", "zeros")
    return MemoryConfig(encoders[encoder](), decoders[decoder](), chunk_size=CHUNK, num_memory_slots=SLOTS,
                        copy_delimiter_token_id=3, **{**SPECIAL, **kw})


def token_inputs(batch: int, length: int = 14) -> dict:
    return {"input_ids": torch.randint(2, VOCAB, (batch, length))}


def causal_lm(**kw):
    return lambda: MemoryForCausalLM(memory_config(**kw))


def randomize_positions(model):
    """Fill a `position_embedding="learned"` table (zero-initialised) at random, so that a test sees it act."""
    if getattr(model, "decoder_position_embeddings", None) is not None:
        torch.nn.init.normal_(model.decoder_position_embeddings.weight, std=0.5)
    return model


def with_random_positions(build):
    return lambda: randomize_positions(build())


# generate(inputs_embeds=...) cannot cross a chunk boundary (the encoder reads token ids): prompt and new tokens fit one.
ONE_CHUNK_PROMPT = dict(prompt_length=2, max_new_tokens=2)

# Multi-chunk inputs: the encoder needs token ids, so inputs_embeds can't replace them (tested separately
# for single-chunk inputs in test_modeling_memory.py).
_CASES = [
    ModelCase("memory_llama_fixed_ones_positions",
              with_random_positions(causal_lm(filler="ones", position_embedding="learned")),
              token_inputs, contract=True, **ONE_CHUNK_PROMPT),
    ModelCase("memory_llama_variable_masked_c2_w16", causal_lm(memory_layout="variable", filler="masked",
                                                              compression=2, encoder_hidden=16), token_inputs),
    ModelCase("memory_llama_learned_filler", causal_lm(filler="learned", pooling="last_nonpad"), token_inputs),
    # Encoder narrower than the decoder (as in the paper's Fig. 2 mixers): with equal widths and no projection, the
    # mixer encoder's token-mixing bias (a constant across the hidden axis) is invisible behind the decoder's LayerNorms.
    ModelCase("memory_mixer_mixer_zeros_w16", causal_lm(encoder="mixer", decoder="mixer", encoder_hidden=16), token_inputs,
              contract=True, **ONE_CHUNK_PROMPT),
    ModelCase("memory_llama_frozen_encoder", causal_lm(freeze_encoder=True, paper_chunk_targets=True,
                                                      loss_reduction="paper"), token_inputs),
    ModelCase("memory_model", lambda: MemoryModel(memory_config(filler="masked")), token_inputs,
              auto_class="AutoModel", output_key="last_hidden_state", labels_key=None, contract=True),
]
CASES = [dataclasses.replace(case, supports_inputs_embeds=False) for case in _CASES]


def word_tokenizer(prefix: str = "w", vocab_size: int = VOCAB):
    """Word-level tokenizer built offline: <bos>=0, <pad>=eos=1, <unk>=2, then w3 .. w98 (vocab 99 by default)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<pad>": 1, "<unk>": 2, **{f"{prefix}{i}": i for i in range(3, vocab_size)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<pad>",
                                   pad_token="<pad>", unk_token="<unk>")


def words(ids) -> str:
    return " ".join(f"w{i}" for i in ids)
