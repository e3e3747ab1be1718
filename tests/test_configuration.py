"""Config classes and presets: validation, round trips, unique model types."""

import json
import pathlib

import pytest
import torch
from transformers import AutoConfig, BertConfig, LlamaConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from memory_models.configuration import build_model, get_preset, list_presets
from memory_models.configuration.presets import llama
from memory_models.modeling_memory import (
    MaskedMixerConfig, MemoryAutoencoderConfig, MemoryConfig, RecurrentMemoryConfig,
)

CONFIG_CLASSES = [MaskedMixerConfig, MemoryConfig, MemoryAutoencoderConfig, RecurrentMemoryConfig]


def test_model_types_are_unique_and_not_native():
    """Our model_type strings cannot collide with a native transformers type or with each other."""
    types = [cls.model_type for cls in CONFIG_CLASSES]
    assert len(set(types)) == len(types)
    assert not set(types) & set(CONFIG_MAPPING_NAMES)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_round_trips(name):
    """Each preset builds a config that survives to_dict/from_dict unchanged."""
    config = get_preset(name)
    again = type(config).from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert config.max_position_embeddings > 0


def test_unknown_preset_names_the_choices():
    """An unknown preset raises ValueError listing the available names."""
    with pytest.raises(ValueError, match="memory-transformer-tiny"):
        get_preset("no-such-preset")


@pytest.mark.parametrize("name", [n for n in list_presets() if n.endswith("-tiny")])
def test_tiny_presets_build_models(name):
    """Every tiny preset instantiates a model of its family."""
    model = build_model(get_preset(name))
    assert model.config.model_type == get_preset(name).model_type
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_paper_presets_have_paper_shapes():
    """Spot-check provenance: Table 3 memory transformer and the Llama-3.2-1B memory decoder."""
    table3 = get_preset("memory-transformer-table3")
    assert (table3.chunk_size, table3.num_memory_slots, table3.max_position_embeddings) == (256, 4, 1024)
    assert table3.decoder_config.hidden_size == table3.encoder_config.hidden_size == 512
    assert table3.decoder_config.num_hidden_layers == 16 and table3.filler == "ones"
    llama_memory = get_preset("llama-3.2-1b-memory")
    assert llama_memory.decoder_config.hidden_size == 2048 and llama_memory.vocab_size == 128256
    assert llama_memory.filler == "masked" and llama_memory.decoder_config.tie_word_embeddings
    fig2 = get_preset("memory-transformer-fig2")
    assert fig2.encoder_config.hidden_size * 2 == fig2.decoder_config.hidden_size


def test_effective_context_is_advertised():
    """max_position_embeddings is the effective context: slots x chunk (memory), segments x chunk (RMT)."""
    assert get_preset("memory-transformer-tiny", num_memory_slots=3).max_position_embeddings == 3 * 8
    assert get_preset("recurrent-memory-tiny", max_segments=5).max_position_embeddings == 5 * 8


@pytest.mark.parametrize("name", ["memory-transformer-tiny", "memory-mixer-tiny", "memory-transformer-small",
                                  "llama-3.2-1b-memory"])
def test_a_memory_preset_chunk_size_is_one_setting(name):
    """A memory preset's chunk size and slot count are single settings: overriding them alone builds a valid config
    whose encoder reads exactly one chunk and whose decoder reads the slots plus one chunk (a pretrained decoder
    keeps its own, larger context)."""
    config = get_preset(name, chunk_size=24, num_memory_slots=3)
    assert (config.chunk_size, config.num_memory_slots, config.max_position_embeddings) == (24, 3, 72)
    assert config.encoder_config.max_position_embeddings == 24
    decoder_positions = config.decoder_config.max_position_embeddings
    assert decoder_positions == 27 or (name == "llama-3.2-1b-memory" and decoder_positions == 131072)


def test_a_recurrent_preset_segment_follows_its_chunk_size():
    """The RMT preset's decoder reads one segment (read tokens, chunk, write tokens) of the chunk size and memory
    tokens asked for."""
    config = get_preset("recurrent-memory-tiny", chunk_size=12, num_memory_tokens=2)
    assert config.decoder_config.max_position_embeddings == config.segment_length == 2 + 12 + 2


def test_sub_configs_serialise_as_dicts_and_rebuild_without_registration():
    """Sub-configs are dicts in JSON and come back as LlamaConfig / MaskedMixerConfig / native types."""
    config = get_preset("memory-mixer-tiny")
    data = config.to_dict()
    assert isinstance(data["encoder_config"], dict) and data["encoder_config"]["model_type"] == "masked_mixer"
    assert isinstance(MemoryConfig.from_dict(data).encoder_config, MaskedMixerConfig)
    bert = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=32)
    ae = MemoryAutoencoderConfig(bert, llama(32, 1, 2, vocab_size=99, positions=16), max_position_embeddings=16)
    assert isinstance(MemoryAutoencoderConfig.from_dict(ae.to_dict()).encoder_config, BertConfig)


def tiny_llama(**kw):
    return llama(32, 1, 2, vocab_size=99, positions=64, **kw)


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: MaskedMixerConfig(hidden_size=0), "hidden_size.*0"),
        (lambda: MaskedMixerConfig(hidden_size=30, num_heads=4), "30.*4"),
        (lambda: MemoryConfig(tiny_llama(), tiny_llama(), chunk_size=8, memory_layout="diagonal"), "memory_layout.*diagonal"),
        (lambda: MemoryConfig(tiny_llama(), tiny_llama(), chunk_size=8, filler="random"), "filler.*random"),
        (lambda: MemoryConfig(tiny_llama(), tiny_llama(), chunk_size=8, compression=3), "compression 3.*32"),
        (lambda: MemoryConfig(tiny_llama(), llama(32, 1, 2, vocab_size=99, positions=10), chunk_size=8), "12.*10"),
        (lambda: MemoryConfig(llama(32, 1, 2, vocab_size=99, positions=4), tiny_llama(), chunk_size=8), "chunk_size 8"),
        (lambda: MemoryConfig(tiny_llama(), llama(32, 1, 2, vocab_size=98, positions=64), chunk_size=8), "99 != .*98"),
        (lambda: MemoryConfig(None, tiny_llama(), chunk_size=8, copy_delimiter_token_id=500), "copy_delimiter_token_id=500"),
        (lambda: MemoryConfig(None, MaskedMixerConfig(vocab_size=99, hidden_size=32, max_position_embeddings=12),
                              chunk_size=8, memory_layout="variable"), "fixed"),
        (lambda: MemoryConfig(None, tiny_llama(), freeze_encoder=True, chunk_size=8), "need an encoder_config"),
        (lambda: MemoryConfig(None, {"hidden_size": 4}, chunk_size=8), "model_type"),
        (lambda: MemoryConfig(None, BertConfig(), chunk_size=8), "bert"),
        (lambda: MemoryAutoencoderConfig(tiny_llama(), tiny_llama(), max_position_embeddings=16, expansion="fold"), "expansion"),
        (lambda: MemoryAutoencoderConfig(tiny_llama(), MaskedMixerConfig(vocab_size=99, hidden_size=31, max_position_embeddings=16),
                                          max_position_embeddings=16), "even"),
        (lambda: MemoryAutoencoderConfig(tiny_llama(), tiny_llama(), max_position_embeddings=128), "64.*128"),
        (lambda: MemoryAutoencoderConfig(tiny_llama(), tiny_llama(), max_position_embeddings=16, fresh_encoder_embedding=True), "freeze_encoder"),
        (lambda: RecurrentMemoryConfig(tiny_llama(), chunk_size=8, filler="gaussian"), "filler"),
        (lambda: RecurrentMemoryConfig(llama(32, 1, 2, vocab_size=99, positions=9), chunk_size=8), "10 positions.*9"),
    ],
)
def test_bad_configs_raise_value_errors_naming_values(factory, message):
    """Invalid settings raise ValueError whose message names the offending values."""
    with pytest.raises(ValueError, match=message):
        factory()


def test_memory_config_defaults_are_the_paper_table3_decoder():
    """A bare MemoryConfig() is valid and uses the paper's decoder shape and special tokens."""
    config = MemoryConfig()
    assert isinstance(config.decoder_config, LlamaConfig)
    assert (config.decoder_config.hidden_size, config.decoder_config.num_hidden_layers) == (512, 16)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.blank_token_id) == (1, 0, 1, 1)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("memory-transformer-tiny", {"LlamaDecoderLayer"}),
        ("memory-mixer-tiny", {"MaskedMixerBlock"}),
        ("mixer-autoencoder-tiny", {"MaskedMixerBlock"}),
        ("recurrent-memory-tiny", {"LlamaDecoderLayer"}),
    ],
)
def test_no_split_modules_are_the_blocks_present(name, expected):
    """FSDP / device_map see exactly the block classes the model contains (accelerate rejects absent ones)."""
    model = build_model(get_preset(name))
    assert set(model._no_split_modules) == expected
    present = {type(m).__name__ for m in model.modules()}
    assert expected <= present


SAVED_CONFIGS = pathlib.Path(__file__).parent / "saved_configs"  # config.json files written by main at f873552
# (recurrent_memory_num_memory_slots.json: at e69d6b0, before the RMT field became num_memory_tokens)


@pytest.mark.parametrize("path", sorted(SAVED_CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_configs_saved_before_sub_configs_still_load(path):
    """A config.json written before the composite configs declared `sub_configs` loads, builds its model and
    reaches the inner configs like a new one (`get_text_config()` is the decoder's)."""
    saved = json.loads(path.read_text())
    config = AutoConfig.for_model(**saved)
    assert config.decoder_config.to_dict()["hidden_size"] == saved["decoder_config"]["hidden_size"]
    assert config.get_text_config(decoder=True) is config.decoder_config
    model = build_model(config)
    ids = torch.randint(2, config.vocab_size, (2, 8))
    assert model(input_ids=ids).logits.shape == (2, 8, config.vocab_size)


@pytest.mark.parametrize("name, tokens, filler", [("recurrent_memory", 2, "learned"),
                                                   ("recurrent_memory_num_memory_slots", 3, "zeros")])
def test_recurrent_memory_config_migrates_the_old_field_names(name, tokens, filler):
    """The RMT's memory tokens per segment are `num_memory_tokens` (in `MemoryConfig`, `num_memory_slots` counts
    chunks): a config saved under either earlier name set (num_memory_tokens + memory_init before the families shared
    names, num_memory_slots + filler after) loads into them and saves back with the current names only."""
    saved = json.loads((SAVED_CONFIGS / f"{name}.json").read_text())
    config = AutoConfig.for_model(**saved)
    assert (config.num_memory_tokens, config.filler) == (tokens, filler)
    assert config.segment_length == tokens + config.chunk_size + tokens
    again = config.to_dict()
    assert "num_memory_slots" not in again and "memory_init" not in again
    assert RecurrentMemoryConfig.from_dict(again).to_dict() == again
