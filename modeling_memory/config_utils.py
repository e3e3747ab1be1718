"""Helpers shared by the composite configs: rebuilding sub-configs and validating choices."""

import inspect

import transformers
from transformers import AutoConfig, LlamaConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

from .configuration_masked_mixer import MaskedMixerConfig

# Our own model types are rebuilt by explicit dispatch: on a Hub user's machine they are not
# registered with AutoConfig. Native transformers types go through AutoConfig.for_model.
LOCAL_CONFIG_CLASSES = {"llama": LlamaConfig, "masked_mixer": MaskedMixerConfig}
# Sizes that must be positive integers wherever a config sets them (a negative one fails deep inside torch).
SIZE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "max_position_embeddings")


class RequiredFieldsMixin:
    """Refuses, in `from_dict` (what `from_pretrained` calls), a saved config without one of `required_fields`:
    their defaults are the paper's sizes, which would not fit the saved weights and fail later on a derived size."""

    required_fields: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        missing = [name for name in cls.required_fields if config_dict.get(name) is None]
        if missing:
            raise ValueError(f"{cls.__name__}: the saved config has no {', '.join(missing)} (required; a default "
                             "would not fit the saved weights)")
        return super().from_dict(config_dict, **kwargs)


def paper_llama(hidden: int, layers: int, heads: int = 4, vocab_size: int = 8000, positions: int = 2048,
                **fields) -> LlamaConfig:
    """A small Llama as the paper builds every one: intermediate size 4d, as many key/value heads as query heads,
    untied embeddings, the paper's special tokens (pad = eos = 1, bos = 0), HF defaults otherwise; `fields` override.
    The one builder of small Llama sub-configs: the configs' defaults, the presets, the probes and the benchmarks."""
    return LlamaConfig(**{
        "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": heads, "max_position_embeddings": positions,
        "tie_word_embeddings": False, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 1, **fields,
    })


def check_sizes(owner: str, config) -> None:
    """Raise a `ValueError` naming `owner.field` for a size in `SIZE_FIELDS` that `config` (a config object or
    its dict) sets to anything but a positive integer."""
    for name in SIZE_FIELDS:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            check_positive_int(owner, name, value)


def build_sub_config(value, name: str, allowed: tuple[str, ...] | None = None) -> PretrainedConfig | None:
    """Turn `None`, a dict (as serialised in config.json) or a config object into a config object."""
    if value is None:
        return None
    if isinstance(value, dict):
        model_type = value.get("model_type")
        if model_type is None:
            raise ValueError(f"{name} is a dict without 'model_type': {sorted(value)}")
        check_sizes(name, value)
        fields = {k: v for k, v in value.items() if k != "model_type"}
        if model_type in LOCAL_CONFIG_CLASSES:
            value = LOCAL_CONFIG_CLASSES[model_type].from_dict(fields)
        else:
            value = AutoConfig.for_model(model_type, **fields)
    if not isinstance(value, PretrainedConfig):
        raise ValueError(f"{name} must be a config object or a dict, got {type(value).__name__}")
    check_sizes(name, value)
    if allowed is not None and value.model_type not in allowed:
        raise ValueError(f"{name} has model_type {value.model_type!r}; supported: {list(allowed)}")
    return value


def keep_sub_config_implementations(kwargs: dict) -> dict:
    """`PretrainedConfig.__init__` applies `attn_implementation` / `experts_implementation` to every entry of
    `sub_configs`, resetting them when none is asked for. Unless one is asked for, keep the sub-configs' own
    (e.g. the "eager" of a decoder loaded with `attn_implementation="eager"`)."""
    for key in ("attn_implementation", "experts_implementation"):
        if kwargs.get(key) is None:
            kwargs[key] = {}  # a per-sub-config dict without entries: every sub-config keeps its own
    return kwargs


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


OWN_MODEL_TYPES = tuple(LOCAL_CONFIG_CLASSES)  # the paper's sub-models, built by explicit dispatch
POOLINGS = ("last", "last_nonpad", "penultimate")  # which encoder position becomes the memory / embedding
DECODER_INPUTS = ("inputs_embeds", "position_ids", "attention_mask")  # what the memory model passes its decoder


def _transformers_class(names):
    name = names[0] if isinstance(names, (tuple, list)) else names
    return getattr(transformers, name, None) if isinstance(name, str) else None


def check_decoder_config(config: PretrainedConfig) -> None:
    """Raise a `ValueError` naming `config.model_type` unless it is a native decoder-only causal LM that a memory
    model can drive: `XForCausalLM` with the base model in `.model` (the Llama layout) whose forward accepts
    `inputs_embeds`, `position_ids` and `attention_mask`. Checked on the classes, before anything is built."""
    model_type = config.model_type
    if model_type in OWN_MODEL_TYPES:
        return
    causal = _transformers_class(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type))
    base = _transformers_class(MODEL_MAPPING_NAMES.get(model_type))
    fits = (causal is not None and base is not None and not getattr(config, "is_encoder_decoder", False)
            and getattr(causal, "base_model_prefix", None) == "model")
    if fits:
        accepted = inspect.signature(base.forward).parameters
        fits = all(name in accepted for name in DECODER_INPUTS)
    if not fits:
        raise ValueError(
            f"decoder_config has model_type {model_type!r}, which is not a native decoder-only causal LM whose base "
            f"model takes {list(DECODER_INPUTS)}; supported: 'llama', 'masked_mixer' and models such as 'qwen2', "
            "'qwen3', 'mistral', 'gemma', 'gemma3_text'"
        )
    for field in ("vocab_size", "hidden_size"):
        if getattr(config, field, None) is None:
            raise ValueError(f"decoder_config of model_type {model_type!r} has no top-level {field} (multimodal "
                             "configs are not supported: pass the text sub-config)")
    if getattr(config, "final_logit_softcapping", None) is not None:
        # The memory model applies `lm_head` itself; a soft-capped head would silently give other logits.
        raise ValueError(f"decoder model_type {model_type!r} uses final_logit_softcapping="
                         f"{config.final_logit_softcapping}, which memory models do not support")
