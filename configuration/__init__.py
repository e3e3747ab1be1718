"""Named presets (`get_preset`, `list_presets`) and re-exports of the config classes.

>>> from memory_models.configuration import get_preset, build_model
>>> config = get_preset("memory-transformer-tiny", chunk_size=8)
>>> model = build_model(config)
"""

import inspect

from transformers import AutoModel, AutoModelForCausalLM

from memory_models.modeling_memory import (
    MaskedMixerConfig, MemoryAutoencoderConfig, MemoryConfig, RecurrentMemoryConfig,
)

from .presets import PRESETS


def list_presets() -> list[str]:
    """Names of all presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str, **overrides):
    """The config object of preset `name`; `overrides` go to the preset function (e.g. `vocab_size=`).

    Every override must be a parameter of the preset function or a field of its config (a typo raises a
    `ValueError` instead of being stored silently).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    function = PRESETS[name]
    named = {p for p in inspect.signature(function).parameters if p != "kw"}
    if overrides.keys() - named:
        default = function()
        unknown = sorted(key for key in overrides.keys() - named if key == "vocab_size" or not hasattr(default, key))
        if unknown:
            raise ValueError(f"preset {name!r} ({default.model_type}) has no field(s) {unknown}; it takes "
                             f"{sorted(named)} and the fields of its {type(default).__name__}")
    return function(**overrides)


def build_model(config):
    """A randomly initialised model for `config`: the causal-LM class where there is one, else the base."""
    try:
        return AutoModelForCausalLM.from_config(config)
    except ValueError:
        return AutoModel.from_config(config)


def main(argv=None) -> int:
    """`memory-models presets`: one line per preset (name, model type, context)."""
    for name in list_presets():
        config = get_preset(name)
        print(f"{name:<34} {config.model_type:<20} context {config.max_position_embeddings}")
    return 0


__all__ = ["MaskedMixerConfig", "MemoryAutoencoderConfig", "MemoryConfig", "RecurrentMemoryConfig",
           "build_model", "get_preset", "list_presets"]
