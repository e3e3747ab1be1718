"""PEFT adapters of our models: save and load what PEFT does not, merge, and rebuild a model from an adapter folder.

* A learned filler (a bare parameter, which PEFT cannot wrap) is saved beside the adapter (`EXTRAS_FILE`).
* [`merge_adapter`] gives the complete merged model; [`load_adapter`] rebuilds it from a base model and an
  adapter folder (`memory-models export --model ADAPTER_DIR`). Adding adapters for training is `training.lora`.
"""

from __future__ import annotations

import json
import os

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from memory_models.conversion.loading import load_model

EXTRAS_FILE = "trainable_extras.safetensors"  # trainable parameters PEFT does not save (a learned filler)


def is_peft_model(model) -> bool:
    """True for a PEFT-wrapped model."""
    return isinstance(model, PeftModel)


def extra_trainable_names(model) -> list[str]:
    """Trainable bare parameters that PEFT would freeze and not save: the learned filler."""
    filler = getattr(model, "filler", None)
    return ["filler"] if isinstance(filler, torch.nn.Parameter) else []


def save_extras(peft_model, folder) -> None:
    """Write the learned filler (and any other extra trainable parameter) beside an adapter."""
    base = peft_model.get_base_model()
    names = extra_trainable_names(base)
    if names:
        save_file({name: getattr(base, name).detach().contiguous() for name in names},
                  os.path.join(folder, EXTRAS_FILE))


def load_extras(model, folder) -> None:
    """Load `EXTRAS_FILE` of `folder` (if any) into `model` (a PeftModel or its base)."""
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


def load_adapter(folder, base_model=None, trust_remote_code: bool = False):
    """The merged model of the adapter in `folder` on `base_model` (folder; default: the recorded base), loaded
    with `conversion.loading.load_model`."""
    base_path = base_model or adapter_base(folder)
    if base_path is None or not os.path.exists(os.path.join(base_path, "config.json")):
        raise ValueError(
            f"{folder} holds only a LoRA adapter whose base model is unknown or missing ({base_path!r}): pass "
            "--base-model DIR (the model the adapter was trained on), or export the run's final/ folder, which "
            "holds the merged model"
        )
    base = load_model(base_path, option="--base-model", trust_remote_code=trust_remote_code, allow_option=None)
    peft_model = PeftModel.from_pretrained(base, folder)
    load_extras(peft_model, folder)
    return merge_adapter(peft_model)
