"""Helpers shared by the composite configs: rebuilding sub-configs and validating choices."""

from transformers import AutoConfig, LlamaConfig, PretrainedConfig

from .configuration_masked_mixer import MaskedMixerConfig

# Our own model types are rebuilt by explicit dispatch: on a Hub user's machine they are not
# registered with AutoConfig. Native transformers types go through AutoConfig.for_model.
LOCAL_CONFIG_CLASSES = {"llama": LlamaConfig, "masked_mixer": MaskedMixerConfig}


def build_sub_config(value, name: str, allowed: tuple[str, ...] | None = None) -> PretrainedConfig | None:
    """Turn `None`, a dict (as serialised in config.json) or a config object into a config object."""
    if value is None:
        return None
    if isinstance(value, dict):
        model_type = value.get("model_type")
        if model_type is None:
            raise ValueError(f"{name} is a dict without 'model_type': {sorted(value)}")
        fields = {k: v for k, v in value.items() if k != "model_type"}
        if model_type in LOCAL_CONFIG_CLASSES:
            value = LOCAL_CONFIG_CLASSES[model_type].from_dict(fields)
        else:
            value = AutoConfig.for_model(model_type, **fields)
    if not isinstance(value, PretrainedConfig):
        raise ValueError(f"{name} must be a config object or a dict, got {type(value).__name__}")
    if allowed is not None and value.model_type not in allowed:
        raise ValueError(f"{name} has model_type {value.model_type!r}; supported: {list(allowed)}")
    return value


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}.{name} must be one of {list(choices)}, got {value!r}")


def check_positive_int(owner: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer, got {value!r}")


def context_length(config: PretrainedConfig) -> int | None:
    """The number of positions a sub-model accepts (`max_position_embeddings` or an equivalent)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if value is not None:
            return value
    return None
