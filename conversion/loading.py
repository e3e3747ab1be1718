"""The one checked way every command and Python helper loads a saved model, its config and its tokenizer.

`from_pretrained` fills tensors missing from a checkpoint with random values and only warns; a path that is not a
folder is tried as a Hub repo id; a truncated weights file fails without naming the file; a config without
`model_type` triggers an interactive custom-code prompt; and code shipped in a folder runs when asked to. Here:

* [`load_config`] refuses an invalid `config.json` (naming the line), a missing or unknown `model_type`, sizes that
  are not positive integers (naming the field) and fields the config class cannot default (its own `ValueError`);
* code shipped with a folder (`auto_map`) runs only with `trust_remote_code=True` (`--trust-remote-code`); our
  own model types and transformers' load with the installed classes without it;
* [`load_model`] refuses a local-looking path that is not a folder, an unreadable (truncated, corrupt)
  `*.safetensors` file, a shard missing from `model.safetensors.index.json` or named there outside the folder, a
  config whose sizes do not fit the checkpoint's tensors, integer tensors where the model holds floating-point
  weights (never cast), a pickle file torch will not load safely, tensors missing from the checkpoint or unused by
  the model (unless allowed) and NaN or inf in the loaded weights, naming the file and the tensors (transformers'
  own load report is held back unless missing tensors are allowed: each problem it lists is then a refusal
  here or a tensor the caller drops on purpose, such as an ablated model's encoder);
* [`load_tokenizer`] names the folder and the file of a tokenizer that cannot be read.

Every refusal is a `ValueError` naming the option (`--model`, `--init-from`, ...) and the path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from memory_models.modeling_memory import (
    MaskedMixerConfig, MemoryAutoencoderConfig, MemoryConfig, RecurrentMemoryConfig, capabilities,
)
from memory_models.modeling_memory.config_utils import check_sizes

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
OFFLINE_VALUES = {"1", "true", "yes", "on"}
SHARD_INDEX = "model.safetensors.index.json"
TRUST_FLAG = "--trust-remote-code"
OUR_MODEL_TYPES = tuple(c.model_type for c in (MemoryConfig, MemoryAutoencoderConfig, RecurrentMemoryConfig,
                                               MaskedMixerConfig))  # importing them registers our Auto classes
CONFIG_ERRORS = (ValueError, TypeError, KeyError, StrictDataclassError)  # what config classes raise on bad fields


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


def _local(path) -> Path | None:
    folder = Path(str(path)).expanduser()
    return folder if folder.is_dir() else None


def read_config_file(folder, option: str = "--model") -> dict:
    """The content of `folder/config.json`; invalid JSON or a non-object is a `ValueError` naming the line."""
    file = Path(folder) / "config.json"
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{option}: {file}: not valid JSON ({error.msg} at line {error.lineno}, column "
                         f"{error.colno}).") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{option}: {file}: not UTF-8 text ({error.reason}).") from None
    if not isinstance(content, dict):
        raise ValueError(f"{option}: {file}: a JSON {type(content).__name__}, not an object.")
    return content


def check_config_content(content: dict, file, *, option: str, trust_remote_code: bool) -> None:
    """Refuse a config without a usable `model_type`, or one whose code ships in the folder without consent."""
    model_type = content.get("model_type")
    remote = (content.get("auto_map") or {}).get("AutoConfig") if isinstance(content.get("auto_map"), dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"{option}: {file}: no model_type, so the kind of model it holds is unknown (add "
                         "\"model_type\", e.g. \"memory_model\" or \"llama\").")
    if model_type in CONFIG_MAPPING:
        return
    unknown = f"{option}: {file}: model_type {model_type!r} is neither memory-models' ({', '.join(OUR_MODEL_TYPES)}) " \
              "nor transformers'"
    if remote is None:
        raise ValueError(f"{unknown}.")
    if not trust_remote_code:
        raise ValueError(f"{unknown}; the folder ships code for it (auto_map AutoConfig: {remote!r}): pass "
                         f"{TRUST_FLAG} to run that code if you trust it.")


def _refuse_remote_code(error: ValueError, path, option: str) -> None:
    if "trust_remote_code" in str(error):
        raise ValueError(f"{option} {str(path)!r} needs code shipped with it (custom code); pass {TRUST_FLAG} to "
                         "run that code if you trust it.") from error


def load_config(path, *, trust_remote_code: bool = False, option: str = "--model", **overrides):
    """The checked config of a saved model (folder or Hub id); `overrides` set config fields (see the module doc)."""
    check_model_path(path, option)
    folder = _local(path)
    where = f"{folder / 'config.json'}" if folder else str(path)
    if folder is not None:
        check_config_content(read_config_file(folder, option), where, option=option,
                             trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code, **overrides)
    except OSError as error:  # a Hub id that is neither cached (offline) nor reachable
        if folder is not None:
            raise ValueError(f"{option} {str(path)!r}: {error}") from error
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in OFFLINE_VALUES
        raise ValueError(f"{option} {str(path)!r}: no such folder, and no Hub model of that name could be loaded"
                         + (" (HF_HUB_OFFLINE is set and it is not cached)" if offline else "")
                         + f": {error}") from error
    except CONFIG_ERRORS as error:
        if isinstance(error, ValueError):
            _refuse_remote_code(error, path, option)
        raise ValueError(f"{option}: {where}: {error}") from error
    try:
        check_sizes(type(config).__name__, config)
    except ValueError as error:
        raise ValueError(f"{option}: {where}: {error}") from error
    return config


def with_memory_window(config, memory_window: str | None = None, max_context: int | None = None, *,
                       where: str = "the model"):
    """`config` read through another memory window (`memory_window` `"bounded"` / `"rolling"`, and the context a
    rolling one advertises, `max_context`): a new config, built and checked as a saved one with those fields would be;
    `config` itself when neither is given. Only a memory model has a window (a `ValueError` naming `where`)."""
    overrides = {key: value for key, value in (("memory_window", memory_window), ("max_context", max_context))
                 if value is not None}
    if not overrides:
        return config
    if not capabilities(config).takes_memory_embeds:
        raise ValueError(f"{where} is a {config.model_type!r} model: only a memory model has a memory window "
                         f"({', '.join(overrides)})")
    return type(config).from_dict({**config.to_dict(), **overrides})


def load_tokenizer(path, *, trust_remote_code: bool = False, option: str = "--tokenizer"):
    """`AutoTokenizer.from_pretrained(path)`, refusing code shipped with it unless `trust_remote_code`; files that
    cannot be read (a malformed `tokenizer.json`, ...) are a `ValueError` naming the folder and the file."""
    if _local(path) is None:
        check_model_path(path, option)
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except ValueError as error:
        _refuse_remote_code(error, path, option)
        raise ValueError(f"{option} {str(path)!r}: {error}") from error
    except OSError as error:
        raise ValueError(f"{option} {str(path)!r} holds no loadable tokenizer: {error}") from error
    except Exception as error:  # noqa: BLE001 - tokenizers and transformers raise KeyError, TypeError, their own types
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{option} {str(path)!r}: {_unreadable_tokenizer_file(_local(path))} could not be read "
                         f"({type(error).__name__}: {first_line}).") from error


def _unreadable_tokenizer_file(folder: Path | None) -> str:
    """Which of a folder's tokenizer files is broken (for messages)."""
    from tokenizers import Tokenizer

    readers = {"tokenizer.json": lambda file: Tokenizer.from_file(str(file)),
               "tokenizer_config.json": lambda file: json.loads(file.read_text(encoding="utf-8"))}
    for name, read in readers.items():
        if folder is not None and (folder / name).is_file():
            try:
                read(folder / name)
            except Exception:  # noqa: BLE001 - whatever the reader raises, this file is the broken one
                return f"its {name}"
    return "its tokenizer files"


@dataclass(frozen=True)
class StoredTensor:
    """Where a checkpoint tensor is and what it is, read from its file's header."""

    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors' name: "F32", "BF16", "I64", ...

    @property
    def is_floating_point(self) -> bool:
        return self.dtype.startswith(("F", "BF"))


def _listed_shards(folder: Path, option: str) -> list[str]:
    """The shard files `model.safetensors.index.json` names: plain file names of `folder`, never paths out of it."""
    index = folder / SHARD_INDEX
    try:
        listed = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"{option} {str(folder)!r}: {index} is unreadable: {error!r}") from None
    outside = [name for name in listed if not isinstance(name, str) or Path(name).name != name or
               name in (".", "..") or (folder / name).is_symlink()]
    if outside:
        raise ValueError(f"{option} {str(folder)!r}: {SHARD_INDEX} names {outside[:3]} as shards, which are not "
                         "files of the model folder (shards are plain file names inside it).")
    missing = [name for name in listed if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{option} {str(folder)!r}: the shards {missing} listed in {SHARD_INDEX} are missing.")
    return listed


def stored_tensors(folder, option: str = "--model") -> dict[str, StoredTensor]:
    """Every tensor of `folder`'s `*.safetensors` files (each file opened, every tensor's header read): a truncated
    or corrupt file, and a shard of `model.safetensors.index.json` missing or named outside the folder, are a
    `ValueError` naming it."""
    folder = Path(folder)
    if (folder / SHARD_INDEX).is_file():
        _listed_shards(folder, option)
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    view = handle.get_slice(key)
                    tensors[key] = StoredTensor(file, tuple(view.get_shape()), view.get_dtype())
        except Exception as error:  # safetensors raises its own error types
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{option}: {file} is unreadable (truncated or corrupt?): {first_line}") from error
    return tensors


def weight_files(folder, option: str = "--model") -> dict[str, Path]:
    """Tensor name -> the `*.safetensors` file of `folder` that holds it (checked as [`stored_tensors`] says)."""
    return {name: tensor.file for name, tensor in stored_tensors(folder, option).items()}


def check_fits_checkpoint(config, tensors: dict[str, StoredTensor], auto_classes, path, option: str) -> None:
    """Refuse, before any weight is loaded, a config whose tensors have other shapes than the checkpoint's (e.g.
    an edited `config.json` with enormous sizes: transformers would allocate them, then print a long report), and
    integer checkpoint tensors where the model holds floating-point weights (they would be cast silently). The
    model is built on the meta device: no memory is allocated."""
    if not tensors:
        return
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = _with_auto_class(auto_classes, lambda auto_class: auto_class.from_config(config).state_dict())
    except (RuntimeError, NotImplementedError, TypeError):  # cannot be built on meta: transformers' loading checks it
        return
    shapes = {name: tuple(expected[name].shape) for name in tensors if name in expected}
    mismatched = [f"{name} is {shape} by config.json but {tensors[name].shape} in {tensors[name].file.name}"
                  for name, shape in shapes.items() if shape != tensors[name].shape]
    if mismatched:
        raise ValueError(f"{option} {str(path)!r}: config.json does not fit the checkpoint's tensors: {mismatched[0]}"
                         + (f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else "") + ".")
    integers = [f"{name} ({tensor.dtype} in {tensor.file.name})" for name, tensor in tensors.items()
                if name in expected and expected[name].is_floating_point() and not tensor.is_floating_point]
    if integers:
        raise ValueError(f"{option} {str(path)!r} holds integer tensors where the model's weights are floating point: "
                         f"{integers[:5]}; refusing to cast them.")


def nonfinite_tensors(model) -> list[str]:
    """Names of the floating-point parameters and buffers of `model` holding NaN or inf."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_finite(model, path, option: str = "--model", files: dict[str, Path] | None = None) -> None:
    """Refuse `model` if a weight holds NaN or inf, naming the tensors and (when known) their files."""
    bad = nonfinite_tensors(model)
    if not bad:
        return
    named = [f"{name} ({files[name].name})" if files and name in files else name for name in bad[:10]]
    raise ValueError(f"{option} {str(path)!r} holds NaN or inf in the tensors {named}"
                     + (f" and {len(bad) - 10} more" if len(bad) > 10 else "") + ".")


def check_loading_info(path, info: dict, *, allow_missing: bool = False, allow_unexpected: bool = False,
                       option: str = "--model", allow_option: str | None = "--allow-missing-weights") -> None:
    """Refuse a load whose `output_loading_info` reports missing, unexpected or mismatched tensors."""
    problems = []
    if info.get("missing_keys") and not allow_missing:
        problems.append(f"missing from the checkpoint (would be random): {sorted(info['missing_keys'])}")
    if info.get("unexpected_keys") and not allow_unexpected:
        problems.append(f"in the checkpoint but not in the model: {sorted(info['unexpected_keys'])}")
    hint = f". Pass {allow_option} to load it anyway" if problems and allow_option else ""
    if info.get("mismatched_keys"):
        problems.append(f"with mismatched shapes: {sorted(str(k) for k in info['mismatched_keys'])}")
    if problems:
        raise ValueError(f"{option} {str(path)!r} does not fit the model; tensors " + "; tensors ".join(problems)
                         + hint + ".")


def load_model(path, *, config=None, trust_remote_code: bool = False, allow_missing: bool = False,
               allow_unexpected: bool | None = None, option: str = "--model",
               allow_option: str | None = "--allow-missing-weights", auto_classes=(AutoModelForCausalLM, AutoModel),
               return_info: bool = False, **kwargs):
    """The first of `auto_classes` that has a class for the config `.from_pretrained(path)`, checked as the module
    doc says; with `return_info`, `(model, loading_info)`.

    Args:
        config (*optional*): a config to load the weights into (default: [`load_config`] of `path`).
        trust_remote_code (`bool`): run code shipped with the folder (`auto_map`) for types not installed.
        allow_missing (`bool`): accept tensors missing from the checkpoint (they stay randomly initialised).
        allow_unexpected (`bool`, *optional*): accept unused checkpoint tensors; defaults to `allow_missing`.
        option / allow_option (`str`): the CLI names used in error messages (`allow_option=None`: a command
            without such a flag).
        **kwargs: passed to `from_pretrained` (`dtype`, ...).
    """
    if config is None:
        config = load_config(path, trust_remote_code=trust_remote_code, option=option)
    folder = _local(path)
    tensors = stored_tensors(folder, option) if folder is not None else {}
    if config.model_type in CONFIG_MAPPING:  # installed classes (code shipped with a folder is not built twice)
        check_fits_checkpoint(config, tensors, auto_classes, path, option)
    files = {name: tensor.file for name, tensor in tensors.items()} if folder is not None else None
    load = {"config": config, "trust_remote_code": trust_remote_code, "output_loading_info": True, **kwargs}
    report = contextlib.nullcontext() if allow_missing else held_load_report()  # then it names random tensors
    try:
        with warnings.catch_warnings(), report:
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # torch's, before it refuses
            model, info = _from_pretrained(auto_classes, str(path), load)
    except ValueError as error:
        _refuse_remote_code(error, path, option)
        raise
    except OSError as error:  # e.g. a folder without any weights file
        raise ValueError(f"{option} {str(path)!r}: {error}") from error
    except pickle.UnpicklingError as error:
        raise ValueError(f"{option} {str(path)!r}: its pickle weights file (*.bin) holds more than tensors, so torch "
                         "refuses to load it safely (weights_only=True), and memory-models never unpickles code: "
                         "convert it to safetensors with a tool you trust.") from error
    check_loading_info(path, info, allow_missing=allow_missing,
                       allow_unexpected=allow_missing if allow_unexpected is None else allow_unexpected,
                       option=option, allow_option=allow_option)
    check_finite(model, path, option, files)
    return (model, info) if return_info else model


@contextlib.contextmanager
def held_load_report():
    """Hold back transformers' `LOAD REPORT` warning (a table of missing / unexpected tensors) for a load whose
    `loading_info` the caller checks itself; a load that fails logs it after all, since the error may refer to it."""
    logger, held = logging.getLogger("transformers.modeling_utils"), []

    def hold(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            held.append(record)
            return False
        return True

    logger.addFilter(hold)
    try:
        yield
    except BaseException:
        logger.removeFilter(hold)
        for record in held:
            logger.handle(record)
        raise
    finally:
        logger.removeFilter(hold)


def _from_pretrained(auto_classes, path: str, load: dict):
    """`from_pretrained` of the first Auto class with a class for the config."""
    return _with_auto_class(auto_classes, lambda auto_class: auto_class.from_pretrained(path, **load))


def _with_auto_class(auto_classes, call):
    """`call(auto_class)` with the first of `auto_classes` that has a class for the config."""
    *others, last = auto_classes
    for auto_class in others:
        try:
            return call(auto_class)
        except ValueError as error:
            if "Unrecognized configuration class" not in str(error):
                raise
    return call(last)
