"""LoRA for `memory-models train` (`--lora-r ...`): adapters on the decoder, memory parts kept trainable.

* Targets: by default the decoder's attention and MLP projections (`q/k/v/o_proj`, `gate/up/down_proj`); for a
  memory model only modules under `decoder.` match, so a frozen encoder stays bit-identical.
* The memory bottleneck/projection, the learned decoder positions (and a trainable encoder) are `modules_to_save`; a learned filler (a bare
  parameter, which PEFT cannot wrap) stays trainable and is saved beside the adapter
  (`conversion.adapters.EXTRAS_FILE`).
* Saving, loading and merging adapters is `conversion.adapters` (`memory-models export --model ADAPTER_DIR`).
"""

from __future__ import annotations

import os
import re

from peft import LoraConfig, get_peft_model

from memory_models.conversion.adapters import extra_trainable_names

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MEMORY_MODULES = ("memory_compress", "memory_expand", "memory_projection", "decoder_position_embeddings")


def target_pattern(model, targets=DEFAULT_TARGETS) -> str:
    """Regex (PEFT full match) of the modules to adapt: `targets` inside the decoder of a memory model, anywhere
    in other models."""
    names = "|".join(re.escape(t) for t in targets)
    prefix = r"decoder\..*\." if getattr(model.config, "decoder_config", None) is not None else r"(.*\.)?"
    return rf"{prefix}({names})"


def apply_lora(model, r: int, alpha: float | None = None, dropout: float = 0.0, targets=None):
    """Wrap `model` in a LoRA `PeftModel` (task `CAUSAL_LM`); memory parts stay trainable (see module docstring)."""
    if r < 1:
        raise ValueError(f"--lora-r must be a positive integer, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"--lora-dropout must be in [0, 1), got {dropout}")
    targets = tuple(targets or DEFAULT_TARGETS)
    pattern = target_pattern(model, targets)
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    if not matched:
        raise ValueError(f"--lora-target-modules {list(targets)} match no module of {type(model).__name__}")
    save = [name for name in MEMORY_MODULES if getattr(model, name, None) is not None]
    encoder = getattr(model, "encoder", None)
    if encoder is not None and any(p.requires_grad for p in encoder.parameters()):
        save.append("encoder")  # a trainable encoder keeps training in full
    config = LoraConfig(r=r, lora_alpha=alpha if alpha is not None else r, lora_dropout=dropout,
                        target_modules=pattern, modules_to_save=save or None, task_type="CAUSAL_LM")
    base_path = getattr(model.config, "_name_or_path", "") or None
    if base_path is not None and os.path.isdir(base_path):
        base_path = os.path.abspath(base_path)  # merging later must find it from any working directory
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_path
    for name in extra_trainable_names(model):
        getattr(model, name).requires_grad_(True)
    return peft_model
