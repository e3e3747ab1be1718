"""Named presets (`get_preset`, `list_presets`) and re-exports of the config classes.

>>> from configuration import get_preset, build_model
>>> config = get_preset("memory-transformer-tiny", chunk_size=8)
>>> model = build_model(config)
"""

from modeling_memory import MaskedMixerConfig, MemoryAutoencoderConfig, MemoryConfig, RecurrentMemoryConfig

from .presets import PRESETS


def list_presets() -> list[str]:
    """Names of all presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str, **overrides):
    """The config object of preset `name`; `overrides` go to the preset function (e.g. `vocab_size=`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return PRESETS[name](**overrides)


def build_model(config):
    """A randomly initialised model for `config`: the causal-LM class where there is one, else the base."""
    import modeling_memory  # noqa: F401  (registers our Auto classes)
    from transformers import AutoModel, AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_config(config)
    except ValueError:
        return AutoModel.from_config(config)


__all__ = ["MaskedMixerConfig", "MemoryAutoencoderConfig", "MemoryConfig", "RecurrentMemoryConfig",
           "build_model", "get_preset", "list_presets"]
