"""LoRA for `memory-models train` (`--lora-r ...`): adapters on the decoder, memory parts kept trainable.

* Targets: by default the decoder's attention and MLP projections (`q/k/v/o_proj`, `gate/up/down_proj`); for a
  memory model only modules under `decoder.` match, so a frozen encoder stays bit-identical.
* The memory bottleneck/projection (and a trainable encoder) are `modules_to_save`; a learned filler (a bare
  parameter, which PEFT cannot wrap) stays trainable and is saved beside the adapter (`EXTRAS_FILE`).
* [`merge_adapter`] gives the complete merged model (what `final/` holds); [`load_adapter`] rebuilds it from a
  base model and an adapter folder (`memory-models export --model ADAPTER_DIR`).
"""

from __future__ import annotations

import json
import os
import re

import torch

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MEMORY_MODULES = ("memory_compress", "memory_expand", "memory_projection")
EXTRAS_FILE = "trainable_extras.safetensors"  # trainable parameters PEFT does not save (a learned filler)


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def target_pattern(model, targets=DEFAULT_TARGETS) -> str:
    """Regex (PEFT full match) of the modules to adapt: `targets` inside the decoder of a memory model, anywhere
    in other models."""
    names = "|".join(re.escape(t) for t in targets)
    prefix = r"decoder\..*\." if getattr(model.config, "decoder_config", None) is not None else r"(.*\.)?"
    return rf"{prefix}({names})"


def extra_trainable_names(model) -> list[str]:
    """Trainable bare parameters that PEFT would freeze and not save: the learned filler."""
    filler = getattr(model, "filler", None)
    return ["filler"] if isinstance(filler, torch.nn.Parameter) else []


def apply_lora(model, r: int, alpha: float | None = None, dropout: float = 0.0, targets=None):
    """Wrap `model` in a LoRA `PeftModel` (task `CAUSAL_LM`); memory parts stay trainable (see module docstring)."""
    from peft import LoraConfig, get_peft_model

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


def save_extras(peft_model, folder) -> None:
    """Write the learned filler (and any other extra trainable parameter) beside an adapter."""
    from safetensors.torch import save_file

    base = peft_model.get_base_model()
    names = extra_trainable_names(base)
    if names:
        save_file({name: getattr(base, name).detach().contiguous() for name in names},
                  os.path.join(folder, EXTRAS_FILE))


def load_extras(model, folder) -> None:
    """Load `EXTRAS_FILE` of `folder` (if any) into `model` (a PeftModel or its base)."""
    from safetensors.torch import load_file

    path = os.path.join(folder, EXTRAS_FILE)
    if not os.path.exists(path):
        return
    base = model.get_base_model() if is_peft_model(model) else model
    with torch.no_grad():
        for name, value in load_file(path).items():
            getattr(base, name).copy_(value)


def merge_adapter(peft_model):
    """The complete model with the adapters merged into the weights (modules_to_save and extras included)."""
    return peft_model.merge_and_unload()


def adapter_base(folder) -> str | None:
    """The base model recorded in an adapter folder's `adapter_config.json` (`None` when unknown)."""
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as handle:
        return json.load(handle).get("base_model_name_or_path") or None


def load_adapter(folder, base_model=None):
    """The merged model of the adapter in `folder` on `base_model` (folder; default: the recorded base)."""
    from peft import PeftModel

    from training.train import load_pretrained

    base_path = base_model or adapter_base(folder)
    if base_path is None or not os.path.exists(os.path.join(base_path, "config.json")):
        raise ValueError(
            f"{folder} holds only a LoRA adapter whose base model is unknown or missing ({base_path!r}): pass "
            "--base-model DIR (the model the adapter was trained on), or export the run's final/ folder, which "
            "holds the merged model"
        )
    peft_model = PeftModel.from_pretrained(load_pretrained(base_path), folder)
    load_extras(peft_model, folder)
    return merge_adapter(peft_model)
