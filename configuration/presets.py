"""Named configurations: every model the paper trains, plus tiny variants for tests and demos.

Paper: B. L. Badger, "Language Model Memory and Memory Models for Language", arXiv 2602.13466.
Sizes come from the paper's tables and figures and, where the paper is silent, from the research
code's drivers (blbadger/memorymodels @ b5bbc77).
Every preset function takes `vocab_size` and keyword overrides of the top-level config.
"""

from transformers import LlamaConfig

from memory_models.modeling_memory import (
    MaskedMixerConfig, MemoryAutoencoderConfig, MemoryConfig, RecurrentMemoryConfig,
)
from memory_models.modeling_memory.config_utils import paper_llama

PAPER_VOCAB = 8000  # the paper's 8k FineWeb tokenizer (len(tokenizer) == 8000)
LLAMA3_VOCAB = 128256
SPECIAL = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)  # paper: pad = eos = 1, bos = 0


def _build(cls, *sub_configs, overrides, **defaults):
    """`cls(*sub_configs, **defaults)` where caller overrides replace defaults (never clash with them)."""
    return cls(*sub_configs, **{**SPECIAL, **defaults, **overrides})


def _memory_model(encoder, decoder, *, chunk_size, num_memory_slots, overrides, **defaults) -> MemoryConfig:
    """A `MemoryConfig` whose chunk size (and slot count) is ONE setting: the encoder reads `chunk_size` positions and
    the decoder `num_memory_slots + chunk_size`, from the preset's values or the caller's overrides of them.
    `encoder` / `decoder`: functions of their number of positions that return the sub-configs."""
    chunk = overrides.get("chunk_size", chunk_size)
    slots = overrides.get("num_memory_slots", num_memory_slots)
    return _build(MemoryConfig, encoder(chunk), decoder(slots + chunk), overrides=overrides,
                  **{**defaults, "chunk_size": chunk, "num_memory_slots": slots})


def _recurrent_memory(decoder, *, chunk_size, max_segments, num_memory_tokens=1, overrides,
                      **defaults) -> RecurrentMemoryConfig:
    """A `RecurrentMemoryConfig` whose decoder reads one segment: read tokens, `chunk_size` tokens, write tokens,
    from the preset's chunk size and memory tokens or the caller's overrides of them."""
    chunk = overrides.get("chunk_size", chunk_size)
    tokens = overrides.get("num_memory_tokens", num_memory_tokens)
    return _build(RecurrentMemoryConfig, decoder(chunk + 2 * tokens), overrides=overrides,
                  **{**defaults, "chunk_size": chunk, "max_segments": max_segments, "num_memory_tokens": tokens})


llama = paper_llama  # a small Llama as the paper builds them (intermediate 4d, no GQA, untied, SPECIAL ids)


def mixer(hidden, layers, length, kernel=1, vocab_size=PAPER_VOCAB, **kw) -> MaskedMixerConfig:
    return MaskedMixerConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                             max_position_embeddings=length, kernel_size=kernel, **{**SPECIAL, **kw})


def llama_3_2_1b(positions=131072) -> LlamaConfig:
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json (the paper's code uses the
    # unsloth/Llama-3.2-1B mirror; the paper's text calls it "Llama 3.1 1b").
    return LlamaConfig(
        vocab_size=LLAMA3_VOCAB, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
        max_position_embeddings=positions, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=128001, pad_token_id=128001,
    )


# ----------------------------------------------------------------------------- Table 1 (n_ctx 512)
def mixer_clm_table1(vocab_size=PAPER_VOCAB, **kw):
    # Table 1 "Causal" mixer: LanguageMixer(d=1024, 8 layers, k=1, L=512), lr 5e-4, 200k steps.
    return mixer(1024, 8, 512, kernel=1, vocab_size=vocab_size, **kw)


def transformer_clm_table1(vocab_size=PAPER_VOCAB, **kw):
    # Table 1 "Causal" transformer: LlamaForCausalLM(d=512, 8 layers, 4 heads), n_ctx 512.
    return llama(512, 8, 4, vocab_size=vocab_size, positions=512, **kw)


def mixer_autoencoder_table1(vocab_size=PAPER_VOCAB, context=512, **kw):
    # Table 1 "Autoencoder" mixer: AutoencodingMixer(d=1024, 8 layers, k=16, unroll, L=512). `context` 256 gives
    # the autoencoder of a 256-token memory chunk (the curriculum's encoder).
    block = mixer(1024, 8, context, kernel=16, vocab_size=vocab_size)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context,
                  expansion="unroll", overrides=kw)


def transformer_autoencoder_table1(vocab_size=PAPER_VOCAB, context=512, **kw):
    # Table 1 "Autoencoder" transformer: UnrolledAutoencodingTransformer(d=512, 8 layers, 16 heads, L=512)
    # (drivers use 16 or 8 heads; the paper's caption says n_l=8).
    block = llama(512, 8, 16, vocab_size=vocab_size, positions=context)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context,
                  expansion="unroll", overrides=kw)


# ----------------------------------------------------------------------------- Table 2 (LLM probes)
def llm_retention_probe_table2(encoder_config=None, context=512, **kw):
    # Table 2: frozen LLM encoder (embeddings included), last position, no attention mask, bridge to 512,
    # unroll, decoder LlamaModel(512, 16 layers, 4 heads). Default encoder: Llama-3.2-1B.
    encoder = encoder_config if encoder_config is not None else llama_3_2_1b()
    decoder = llama(512, 16, 4, vocab_size=encoder.vocab_size, positions=context)
    kw = {**dict(pad_token_id=encoder.pad_token_id, bos_token_id=encoder.bos_token_id,
                 eos_token_id=encoder.eos_token_id), **kw}
    return _build(MemoryAutoencoderConfig, encoder, decoder, max_position_embeddings=context, expansion="unroll",
                                   freeze_encoder=True, pass_attention_mask_to_encoder=False, overrides=kw)


# ----------------------------------------------------------------------------- Fig. 2 (L=256, s=4)
def memory_transformer_fig2(vocab_size=PAPER_VOCAB, **kw):
    # Fig. 2 transformer memory model: encoder d=256, 16 layers; decoder d=512, 16 layers; 256 x 4
    # (run fineweb_memorytrans_256x4_256c1_d512_n16_c256_b64x2), fixed layout, ones filler.
    return _memory_model(lambda n: llama(256, 16, vocab_size=vocab_size, positions=n),
                         lambda n: llama(512, 16, vocab_size=vocab_size, positions=n),
                         chunk_size=256, num_memory_slots=4, filler="ones", overrides=kw)


def memory_mixer_fig2(vocab_size=PAPER_VOCAB, **kw):
    # Fig. 2 mixer memory model: encoder mixer d=512 (k=8), decoder mixer d=1024 (k=1) of length
    # L + s = 260, zeros filler, fixed layout. Layer counts are not printed; 8 as in Table 1's mixers.
    return _memory_model(lambda n: mixer(512, 8, n, kernel=8, vocab_size=vocab_size),
                         lambda n: mixer(1024, 8, n, kernel=1, vocab_size=vocab_size),
                         chunk_size=256, num_memory_slots=4, filler="zeros", overrides=kw)


def memory_transformer_frozen_figs7(vocab_size=PAPER_VOCAB, **kw):
    # Fig. S7: frozen transformer-autoencoder encoder d=1024, 8 layers
    # (fineweb_autotrans_unroll_1024c1_d1024_n8_c512); decoder d=512, 16 layers; 512 x 4.
    return _memory_model(lambda n: llama(1024, 8, vocab_size=vocab_size, positions=n),
                         lambda n: llama(512, 16, vocab_size=vocab_size, positions=n),
                         chunk_size=512, num_memory_slots=4, freeze_encoder=True, overrides=kw)


# ----------------------------------------------------------------------------- Table 3 / Fig. 4
def memory_transformer_table3(vocab_size=PAPER_VOCAB, **kw):
    # Table 3: d_e = d_dec = 512, 16 layers, 4 heads, L=256, s=4, fixed layout, lr 2e-4, batch 64.
    return _memory_model(lambda n: llama(512, 16, vocab_size=vocab_size, positions=n),
                         lambda n: llama(512, 16, vocab_size=vocab_size, positions=n),
                         chunk_size=256, num_memory_slots=4, filler="ones", copy_delimiter_token_id=100,
                         copy_delimiter_length=3, overrides=kw)


def memory_mixer_copy(vocab_size=PAPER_VOCAB, **kw):
    # Mixer copy runs: frozen mixer-autoencoder encoder d=512, 16 layers, k=4; mixer decoder d=512,
    # 16 layers, length L + s; 256 x 4, zeros filler.
    return _memory_model(lambda n: mixer(512, 16, n, kernel=4, vocab_size=vocab_size),
                         lambda n: mixer(512, 16, n, kernel=1, vocab_size=vocab_size),
                         chunk_size=256, num_memory_slots=4, filler="zeros", freeze_encoder=True, overrides=kw)


# ----------------------------------------------------------------------------- Llama-3.2-1B decoder
LLAMA3_SPECIAL = dict(pad_token_id=128001, bos_token_id=128000, eos_token_id=128001)  # <|end_of_text|> pads


def llama3_encoder(vocab_size=LLAMA3_VOCAB, positions=256, **special):
    # Fig. S6 encoder: the transformer autoencoder's encoder trained on the Llama 3 tokenizer, d=512, 16 layers,
    # 4 heads, L=256 (fineweb_autoencoding_transformer_llamatok_512c1_d512_n16_c256_b64x2).
    return llama(512, 16, vocab_size=vocab_size, positions=positions, **{**LLAMA3_SPECIAL, **special})


def llama_3_2_1b_memory(vocab_size=LLAMA3_VOCAB, **kw):
    # Fig. S6 / Tables S1-S2: encoder d=512, 16 layers, Llama-3 tokenizer; decoder Llama-3.2-1B;
    # 256 x 4, fixed layout. Filler "masked" (package decision: ones-vectors have norm ~45 against
    # Llama's embedding scale), so with no memories the decoder is exactly Llama-3.2-1B. Build it with
    # pretrained weights with `memory-models convert` (conversion/pretrained_decoder.py), not from this preset.
    decoder = llama_3_2_1b()  # its own 131072 positions hold any chunk
    decoder.vocab_size = vocab_size
    return _memory_model(lambda n: llama3_encoder(vocab_size, positions=n), lambda n: decoder, chunk_size=256,
                         num_memory_slots=4, filler="masked",
                         copy_delimiter_token_id=128002, copy_delimiter_length=3,  # <|reserved_special_token_0|>
                         position_embedding="learned",  # zero-initialised: with no memories still Llama-3.2-1B
                         overrides={**LLAMA3_SPECIAL, **kw})


def autoencoder_llama3_figs6(vocab_size=LLAMA3_VOCAB, **kw):
    # The Fig. S6 encoder's autoencoder: unrolled transformer autoencoder on the Llama 3 tokenizer, encoder =
    # decoder = Llama d=512, 16 layers, L=256 (run fineweb_autoencoding_transformer_llamatok_512c1_d512_n16_c256;
    # the research code configures 16 layers but runs 8: we build the 16 of the config).
    # Its encoder has exactly the shapes of llama-3.2-1b-memory's encoder (train --encoder-from fits it).
    block = llama3_encoder(vocab_size)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=256, expansion="unroll",
                  overrides={**LLAMA3_SPECIAL, **kw})


# ----------------------------------------------------------------------------- RMT baseline (Fig. S5)
def recurrent_memory_figs5(vocab_size=PAPER_VOCAB, **kw):
    # Fig. S5 recurrent memory transformer: decoder LlamaModel(d=512, 16 layers, 4 heads), one memory
    # token initialised to ones, 256 x 4, full BPTT.
    return _recurrent_memory(lambda n: llama(512, 16, vocab_size=vocab_size, positions=n), chunk_size=256,
                             max_segments=4, num_memory_tokens=1, filler="ones", overrides=kw)


# ----------------------------------------------------------------------------- small (2 CPU cores, minutes)
# Sized to show the paper's effects in minutes on 2 CPU cores (`memory-models reproduce --scale small`), on the
# embedded python-docs corpus with a 2,048-token BPE (SMALL_VOCAB). Every model is 2 layers of width 128 (4 heads
# for the causal transformer, 16 of 8 dimensions for the autoencoder and the memory transformer); the paper's are
# 8-16 layers of width 512-1024.
SMALL_VOCAB = 2048
SMALL = dict(hidden=128, layers=2, heads=4)
SMALL_CHUNK, SMALL_SLOTS = 16, 4  # memory models: 16-token chunks x 4 slots = 64 tokens (paper: 256 x 4)
SMALL_CLM_CONTEXT = 64  # causal LMs are probed at 16 / 32 / 64 tokens (the shape of Table 2)
SMALL_TRANSFORMER_HEADS = 16  # the autoencoder's and the memory transformer's (the causal LM keeps SMALL's 4)


def mixer_autoencoder_small(vocab_size=SMALL_VOCAB, context=16, **kw):
    # Table 1 mixer autoencoder at 1/32 context (16 of 512 tokens), 1/8 width, 1/4 depth: d=128, 2 layers,
    # kernel 16 and unroll as in the paper. `context` 32 / 64 for the retention-vs-context rows.
    block = mixer(SMALL["hidden"], SMALL["layers"], context, kernel=16, vocab_size=vocab_size)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context,
                  expansion="unroll", overrides=kw)


def transformer_autoencoder_small(vocab_size=SMALL_VOCAB, context=16, heads=SMALL_TRANSFORMER_HEADS, **kw):
    # Table 1 transformer autoencoder at 1/32 context (16 of 512 tokens), 1/4 width, 1/4 depth: Llama d=128,
    # 2 layers, 16 heads (as the paper's), unroll; 16 heads of 8 dimensions learn to reconstruct faster than 4 of 32.
    block = llama(SMALL["hidden"], SMALL["layers"], heads, vocab_size=vocab_size, positions=context)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context,
                  expansion="unroll", overrides=kw)


def mixer_clm_small(vocab_size=SMALL_VOCAB, **kw):
    # Table 1 causal mixer at the autoencoders' size (d=128, 2 layers, kernel 1 as in the paper), trained at
    # 64 tokens so that its encoder can be probed at 16, 32 and 64.
    return mixer(SMALL["hidden"], SMALL["layers"], SMALL_CLM_CONTEXT, kernel=1, vocab_size=vocab_size, **kw)


def transformer_clm_small(vocab_size=SMALL_VOCAB, **kw):
    # Table 1 causal transformer at the autoencoders' size (Llama d=128, 2 layers, 4 heads), context 64.
    return llama(**SMALL, vocab_size=vocab_size, positions=SMALL_CLM_CONTEXT, **kw)


def memory_transformer_small(vocab_size=SMALL_VOCAB, **kw):
    # Table 3 / Fig. 4(d) memory transformer at 1/16 chunk (16 of 256 tokens), 1/4 width, 1/8 depth: Llama
    # encoder and decoder d=128, 2 layers, 16 heads of 8 dimensions, 4 slots, fixed layout, ones filler, 3-token
    # delimiter. The encoder is transformer-autoencoder-small's (16 heads: the curriculum's frozen encoder computes
    # the memories it computed there); 16 decoder heads read memories faster than 4 early on (docs/reproduce.md,
    # "Why blank copy was slow", item 6). Learned decoder positions (package option): the decoder tells slots and
    # chunk positions apart and reads memories several times faster; position_embedding="none" is the paper's decoder.
    def block(n):
        return llama(SMALL["hidden"], SMALL["layers"], SMALL_TRANSFORMER_HEADS, vocab_size=vocab_size, positions=n)

    return _memory_model(block, block, chunk_size=SMALL_CHUNK, num_memory_slots=SMALL_SLOTS, filler="ones",
                         copy_delimiter_token_id=100, copy_delimiter_length=3, position_embedding="learned",
                         overrides=kw)


def memory_mixer_small(vocab_size=SMALL_VOCAB, decoder_kernel=16, **kw):
    # Mixer copy runs at 1/16 chunk, 1/4 width, 1/8 depth: encoder = mixer-autoencoder-small's (d=128, 2 layers,
    # kernel 16), mixer decoder d=128, 2 layers, length 16 + 4, zeros filler. The paper's mixer decoders use
    # kernel 1; kernel 16 gives every token position its own linear read of a memory (a kernel-1 mixer or an
    # attention decoder must build it from scalar mixing weights and learns blank copy several times slower:
    # docs/reproduce.md, "Why blank copy was slow"). `decoder_kernel=1` restores the paper's decoder.
    return _memory_model(lambda n: mixer(SMALL["hidden"], SMALL["layers"], n, kernel=16, vocab_size=vocab_size),
                         lambda n: mixer(SMALL["hidden"], SMALL["layers"], n, kernel=decoder_kernel,
                                         vocab_size=vocab_size),
                         chunk_size=SMALL_CHUNK, num_memory_slots=SMALL_SLOTS, filler="zeros",
                         copy_delimiter_token_id=100, copy_delimiter_length=3, overrides=kw)


def recurrent_memory_small(vocab_size=SMALL_VOCAB, **kw):
    # Fig. S5 RMT baseline at the memory transformer's small size: Llama d=128, 2 layers, 16-token segments x 4.
    return _recurrent_memory(lambda n: llama(**SMALL, vocab_size=vocab_size, positions=n), chunk_size=SMALL_CHUNK,
                             max_segments=SMALL_SLOTS, num_memory_tokens=1, filler="ones", overrides=kw)


# ----------------------------------------------------------------------------- tiny (tests, demos)
TINY = dict(hidden=32, layers=2, heads=2)


def masked_mixer_tiny(vocab_size=99, **kw):
    return mixer(32, 2, 32, kernel=1, vocab_size=vocab_size, **kw)


def transformer_clm_tiny(vocab_size=99, **kw):
    return llama(32, 2, 2, vocab_size=vocab_size, positions=64, **kw)


def memory_transformer_tiny(vocab_size=99, **kw):
    return _memory_model(lambda n: llama(32, 2, 2, vocab_size=vocab_size, positions=n),
                         lambda n: llama(32, 2, 2, vocab_size=vocab_size, positions=n),
                         chunk_size=8, num_memory_slots=4, copy_delimiter_token_id=3, overrides=kw)


def memory_mixer_tiny(vocab_size=99, **kw):
    return _memory_model(lambda n: mixer(32, 2, n, kernel=2, vocab_size=vocab_size),
                         lambda n: mixer(32, 2, n, vocab_size=vocab_size),
                         chunk_size=8, num_memory_slots=4, filler="zeros", copy_delimiter_token_id=3, overrides=kw)


def autoencoder_tiny(vocab_size=99, context=16, **kw):
    block = llama(32, 2, 2, vocab_size=vocab_size, positions=context)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context, overrides=kw)


def mixer_autoencoder_tiny(vocab_size=99, context=16, **kw):
    block = mixer(32, 2, context, kernel=4, vocab_size=vocab_size)
    return _build(MemoryAutoencoderConfig, block, block.to_dict(), max_position_embeddings=context, overrides=kw)


def recurrent_memory_tiny(vocab_size=99, **kw):
    return _recurrent_memory(lambda n: llama(32, 2, 2, vocab_size=vocab_size, positions=n), chunk_size=8,
                             max_segments=4, overrides=kw)


PRESETS = {
    "mixer-clm-table1": mixer_clm_table1,
    "transformer-clm-table1": transformer_clm_table1,
    "mixer-autoencoder-table1": mixer_autoencoder_table1,
    "transformer-autoencoder-table1": transformer_autoencoder_table1,
    "llm-retention-probe-table2": llm_retention_probe_table2,
    "memory-transformer-fig2": memory_transformer_fig2,
    "memory-mixer-fig2": memory_mixer_fig2,
    "memory-transformer-frozen-figs7": memory_transformer_frozen_figs7,
    "memory-transformer-table3": memory_transformer_table3,
    "memory-mixer-copy": memory_mixer_copy,
    "llama-3.2-1b-memory": llama_3_2_1b_memory,
    "autoencoder-llama3-figs6": autoencoder_llama3_figs6,
    "recurrent-memory-figs5": recurrent_memory_figs5,
    "mixer-autoencoder-small": mixer_autoencoder_small,
    "transformer-autoencoder-small": transformer_autoencoder_small,
    "mixer-clm-small": mixer_clm_small,
    "transformer-clm-small": transformer_clm_small,
    "memory-transformer-small": memory_transformer_small,
    "memory-mixer-small": memory_mixer_small,
    "recurrent-memory-small": recurrent_memory_small,
    "masked-mixer-tiny": masked_mixer_tiny,
    "transformer-clm-tiny": transformer_clm_tiny,
    "memory-transformer-tiny": memory_transformer_tiny,
    "memory-mixer-tiny": memory_mixer_tiny,
    "autoencoder-tiny": autoencoder_tiny,
    "mixer-autoencoder-tiny": mixer_autoencoder_tiny,
    "recurrent-memory-tiny": recurrent_memory_tiny,
}
