"""Loading saved models without silent surprises.

`from_pretrained` fills tensors missing from a checkpoint with random values and only warns; a path that is
not a folder is tried as a Hub repo id; a truncated weights file fails without naming the file. [`load_model`]
turns each of these into a `ValueError` that names the folder, the file or the tensors:

* a local-looking path (`./x`, `runs/x/final`, `/abs`, `~/x`) that is not a folder, or a Hub-id-like
  name that is neither a folder nor a loadable (or, offline, cached) Hub model;
* an unreadable (truncated, corrupt) `*.safetensors` file;
* tensors missing from the checkpoint, or checkpoint tensors the model does not use (unless allowed);
* NaN or inf in the loaded weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForCausalLM

import modeling_memory  # noqa: F401  (registers our Auto classes)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
OFFLINE_VALUES = {"1", "true", "yes", "on"}


def check_model_path(path, option: str = "--model") -> None:
    """Refuse a path that cannot be a saved model: a local-looking path that is no folder (or any non-folder
    when offline), or a folder without `config.json`."""
    text = str(path)
    local = Path(text).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ValueError(f"{option} {text!r} is a folder without config.json: not a saved model.")
        return
    if local.exists():
        raise ValueError(f"{option} {text!r} is a file; expected a saved model folder (or a Hub repo id).")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or not HUB_ID.match(text):
        raise ValueError(f"{option} {text!r}: no such folder (and not a Hub repo id).")


def check_weight_files(folder) -> None:
    """Open every `*.safetensors` file of `folder`; a truncated or corrupt one is named in a `ValueError`."""
    for file in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key)
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"{file} is unreadable (truncated or corrupt?): {error}") from error


def nonfinite_tensors(model) -> list[str]:
    """Names of the floating-point parameters and buffers of `model` holding NaN or inf."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_loading_info(path, info: dict, *, allow_missing: bool = False, allow_unexpected: bool = False,
                       option: str = "--model", allow_option: str = "--allow-missing-weights") -> None:
    """Refuse a load whose `output_loading_info` reports missing, unexpected or mismatched tensors."""
    problems = []
    if info.get("missing_keys") and not allow_missing:
        problems.append(f"missing from the checkpoint (would be random): {sorted(info['missing_keys'])}")
    if info.get("unexpected_keys") and not allow_unexpected:
        problems.append(f"in the checkpoint but not in the model: {sorted(info['unexpected_keys'])}")
    if info.get("mismatched_keys"):
        problems.append(f"with mismatched shapes: {sorted(str(k) for k in info['mismatched_keys'])}")
    if problems:
        raise ValueError(f"{option} {str(path)!r} does not fit the model; tensors " + "; tensors ".join(problems)
                         + f". Pass {allow_option} to load it anyway.")


def load_model(path, *, config=None, allow_missing: bool = False, allow_unexpected: bool | None = None,
               option: str = "--model", allow_option: str = "--allow-missing-weights", **kwargs):
    """`AutoModelForCausalLM` (else `AutoModel`) `.from_pretrained(path)`, checked as the module doc says.

    Args:
        allow_missing (`bool`): accept tensors missing from the checkpoint (they stay randomly initialised).
        allow_unexpected (`bool`, *optional*): accept unused checkpoint tensors; defaults to `allow_missing`.
        option / allow_option (`str`): the CLI names used in error messages.
    """
    check_model_path(path, option)
    if Path(str(path)).expanduser().is_dir():
        check_weight_files(Path(str(path)).expanduser())
    if config is not None:
        kwargs["config"] = config
    try:
        try:
            model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
        except ValueError:
            model, info = AutoModel.from_pretrained(path, output_loading_info=True, **kwargs)
    except OSError as error:  # a Hub id that is neither cached (offline) nor reachable
        if Path(str(path)).expanduser().is_dir():
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_VALUES
        raise ValueError(f"{option} {str(path)!r}: no such folder, and no Hub model of that name could be loaded"
                         + (" (HF_HUB_OFFLINE is set and it is not cached)" if offline else "") + f": {error}") from error
    check_loading_info(path, info, allow_missing=allow_missing,
                       allow_unexpected=allow_missing if allow_unexpected is None else allow_unexpected,
                       option=option, allow_option=allow_option)
    bad = nonfinite_tensors(model)
    if bad:
        raise ValueError(f"{option} {str(path)!r} holds NaN or inf in the tensors {bad[:10]}"
                         + (f" and {len(bad) - 10} more" if len(bad) > 10 else "") + ".")
    return model
