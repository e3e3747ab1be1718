"""Memory models as Hugging Face models.

Importing this package registers every family with `AutoConfig` / `AutoModel` /
`AutoModelForCausalLM` and marks each class for `register_for_auto_class`, so that
`save_pretrained` always writes the model code and an `auto_map` next to the weights: the saved
folder then loads anywhere with `from_pretrained(folder_or_repo_id, trust_remote_code=True)`.
This file is never shipped to the Hub; the sibling modules are.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_autoencoder import MemoryAutoencoderConfig
from .configuration_masked_mixer import MaskedMixerConfig
from .configuration_memory import MemoryConfig
from .configuration_recurrent_memory import RecurrentMemoryConfig
from .memory_loss import LOSS_STREAMS
from .modeling_autoencoder import MemoryAutoencoder, MemoryAutoencoderOutput, MemoryAutoencoderPreTrainedModel
from .modeling_masked_mixer import MaskedMixerForCausalLM, MaskedMixerModel, MaskedMixerPreTrainedModel
from .modeling_memory import MemoryForCausalLM, MemoryModel, MemoryPreTrainedModel
from .modeling_recurrent_memory import RecurrentMemoryForCausalLM, RecurrentMemoryPreTrainedModel
from .sequence_ops import IGNORE_INDEX


def _register(config_class, model_class=None, causal_lm_class=None):
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    config_class.register_for_auto_class()
    if model_class is not None:
        AutoModel.register(config_class, model_class, exist_ok=True)
        model_class.register_for_auto_class("AutoModel")
    if causal_lm_class is not None:
        AutoModelForCausalLM.register(config_class, causal_lm_class, exist_ok=True)
        causal_lm_class.register_for_auto_class("AutoModelForCausalLM")


_register(MaskedMixerConfig, MaskedMixerModel, MaskedMixerForCausalLM)
_register(MemoryConfig, MemoryModel, MemoryForCausalLM)
_register(MemoryAutoencoderConfig, MemoryAutoencoder)
_register(RecurrentMemoryConfig, causal_lm_class=RecurrentMemoryForCausalLM)

__all__ = [
    "IGNORE_INDEX",
    "LOSS_STREAMS",
    "MaskedMixerConfig",
    "MaskedMixerForCausalLM",
    "MaskedMixerModel",
    "MaskedMixerPreTrainedModel",
    "MemoryAutoencoder",
    "MemoryAutoencoderConfig",
    "MemoryAutoencoderOutput",
    "MemoryAutoencoderPreTrainedModel",
    "MemoryConfig",
    "MemoryForCausalLM",
    "MemoryModel",
    "MemoryPreTrainedModel",
    "RecurrentMemoryConfig",
    "RecurrentMemoryForCausalLM",
    "RecurrentMemoryPreTrainedModel",
]
