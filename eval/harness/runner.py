"""lm-eval integration: evaluate a saved causal model (any family of this package, or any transformers LM).

lm-eval is imported lazily (the `eval` extra), so the rest of `eval/` works without it.

    >>> results = evaluate_model("runs/mt/final", ["mmlu", "swde"], limit=10)
    >>> metric_table(results)  # {(task, metric): value}

A saved model goes to lm-eval's stock `HFLM` (what `lm_eval --model hf --model_args pretrained=DIR` builds), as
a model already loaded and checked by `conversion.loading` (code shipped with a folder runs only with
`trust_remote_code=True`), so that the memory ablation (`no_memory=True`) can change its config first. Memory
models, masked mixers and the RMT give logits aligned with `input_ids`, so HFLM's loglikelihood slicing and
`generate()` work unchanged.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from memory_models.conversion import loading
from memory_models.modeling_memory import capabilities

# The package's own tasks (`records_extraction`, `records_perplexity`: Table 4 at small scale), always available.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
# Keys of an lm-eval results entry that are not metrics.
NOT_METRICS = ("alias", "samples", "name", "sample_len", "sample_count")


def check_causal_lm(model_dir: str, trust_remote_code: bool = False):
    """The model's config, or a `ValueError` saying what to run instead when it is not a causal LM."""
    from transformers import AutoModelForCausalLM

    config = loading.load_config(model_dir, trust_remote_code=trust_remote_code)
    if capabilities(config).is_autoencoder:
        raise ValueError(
            f"{model_dir} is a memory autoencoder (model_type {config.model_type!r}), not a causal language model: "
            f"lm-eval scores next-token predictions, which an autoencoder does not make. Measure how much of its "
            f"input its embedding keeps with `memory-models retention --encoder {model_dir}` instead."
        )
    known = type(config) in AutoModelForCausalLM._model_mapping or "AutoModelForCausalLM" in (
        getattr(config, "auto_map", None) or {}
    )
    if not known:
        raise ValueError(
            f"{model_dir} (model_type {config.model_type!r}) has no causal-LM class (AutoModelForCausalLM); "
            f"lm-eval needs a causal language model."
        )
    return config


def check_has_memory(model_dir: str, config=None, trust_remote_code: bool = False):
    """A `ValueError` unless the model is a memory model whose memories can be ablated (`no_memory`)."""
    config = check_causal_lm(model_dir, trust_remote_code) if config is None else config
    if not capabilities(config).takes_memory_embeds:
        raise ValueError(
            f"--no-memory ablates the memories of a memory model (MemoryConfig.no_memory); {model_dir} is a "
            f"{config.model_type!r} model without that switch."
        )
    return config


def with_rolling_window(model_dir: str, config, max_context: int):
    """A memory model's config re-read with `memory_window="rolling"` advertising `max_context` tokens."""
    if not capabilities(config).takes_memory_embeds:
        raise ValueError(f"--rolling-context needs a memory model (MemoryConfig.memory_window); {model_dir} is a "
                         f"{config.model_type!r} model")
    if max_context < 1:
        raise ValueError(f"--rolling-context must be a positive number of tokens, got {max_context}")
    return loading.with_memory_window(config, "rolling", max_context, where=model_dir)


def load_model(model_dir: str, no_memory: bool = False, dtype: str | None = None, rolling_context: int | None = None,
               trust_remote_code: bool = False):
    """`AutoModelForCausalLM` from `model_dir` in eval mode (`conversion.loading.load_model`); `no_memory=True`
    ablates a memory model's memories; `rolling_context=N` reads it through the rolling memory window, advertising
    an `N`-token context (so that lm-eval's generation budgets fit a model trained on a short window)."""
    config = check_causal_lm(model_dir, trust_remote_code)
    if rolling_context is not None:
        config = with_rolling_window(model_dir, config, rolling_context)
    if no_memory:
        check_has_memory(model_dir, config)
        config.no_memory = True
    kwargs = {"dtype": dtype} if dtype else {}
    model = loading.load_model(model_dir, config=config, trust_remote_code=trust_remote_code, allow_option=None,
                               allow_unexpected=no_memory, **kwargs)  # the ablated model has no encoder to fill
    return model.eval()


def build_lm(model_dir: str, *, tokenizer: str | None = None, batch_size: int = 1, device: str = "cpu",
             no_memory: bool = False, max_length: int | None = None, dtype: str | None = None,
             rolling_context: int | None = None, trust_remote_code: bool = False):
    """lm-eval's `HFLM` around the loaded model and its tokenizer (`tokenizer` defaults to `model_dir`)."""
    from lm_eval.models.huggingface import HFLM

    model = load_model(model_dir, no_memory=no_memory, dtype=dtype, rolling_context=rolling_context,
                       trust_remote_code=trust_remote_code).to(device)
    tok = loading.load_tokenizer(tokenizer or model_dir, option="--tokenizer" if tokenizer else "--model",
                                 trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # never let lm-eval add a new pad token: its id would be past the embeddings
        tok.pad_token = tok.eos_token
    return HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_length)


@functools.lru_cache(maxsize=8)
def _task_manager(include_paths: tuple, include_defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths), include_defaults=include_defaults)


def task_manager_for(include_path: str | None = None, tasks=()):
    """lm-eval's `TaskManager` over `eval/harness/tasks`, `include_path` and, unless every one of `tasks` is found
    there, the installed tasks; built once per process (indexing the ~10k installed task YAMLs takes ~20 s of
    CPU, which a run of the package's own tasks skips)."""
    paths = tuple([str(TASKS_DIR)] + ([str(Path(include_path).resolve())] if include_path else []))
    local = _task_manager(paths, False)
    if tasks and all(task in local.all_tasks for task in tasks):
        return local
    return _task_manager(paths, True)


def evaluate_model(model_dir: str, tasks: list[str], *, limit: int | float | None = None, batch_size: int = 1,
                   include_path: str | None = None, no_memory: bool = False, device: str = "cpu",
                   tokenizer: str | None = None, log_samples: bool = False, max_length: int | None = None,
                   num_fewshot: int | None = None, seed: int = 0, rolling_context: int | None = None,
                   trust_remote_code: bool = False) -> dict:
    """lm-eval's `simple_evaluate` of one saved model on `tasks` (task, group or tag names).

    Args:
        model_dir (`str`): a saved causal model (folder or Hub id).
        tasks (`list[str]`): e.g. `["mmlu", "longbench", "swde"]`; with `include_path` also local tasks.
        limit: at most this many documents per task (a float < 1 is a fraction), as lm-eval's `--limit`.
        include_path (`str`, *optional*): a folder of extra task YAMLs (e.g. the offline look-alikes of
            `eval.harness.lookalike.write_lookalike_tasks`); tasks there replace installed tasks of the same name.
            The package's `eval/harness/tasks` (the `records_*` tasks) are always included.
        no_memory (`bool`): evaluate a memory model with every memory slot holding the filler.
        rolling_context (`int`, *optional*): read a memory model through the rolling memory window, advertising
            this many tokens (lm-eval truncates contexts to it and needs it above the generation budget).
        trust_remote_code (`bool`): run code shipped with a model or tokenizer whose type is not installed.
    Returns:
        lm-eval's results dict (`results`, `groups`, `configs`, ..., `samples` when `log_samples`).
    """
    import lm_eval

    if not tasks:
        raise ValueError("no tasks given")
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    task_manager = task_manager_for(include_path, tasks)
    unknown = [task for task in tasks if task not in task_manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval tasks {unknown}; pass --include-path for local tasks "
                         f"(`memory-models lookalike --output DIR` writes the offline look-alikes)")
    lm = build_lm(model_dir, tokenizer=tokenizer, batch_size=batch_size, device=device, no_memory=no_memory,
                  max_length=max_length, rolling_context=rolling_context, trust_remote_code=trust_remote_code)
    return lm_eval.simple_evaluate(model=lm, tasks=list(tasks), limit=limit, task_manager=task_manager,
                                   log_samples=log_samples, num_fewshot=num_fewshot, random_seed=seed,
                                   numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                                   batch_size=batch_size)


def metric_table(results: dict) -> dict[tuple[str, str], float]:
    """`{(task or group, metric): value}` from lm-eval results (stderr entries and non-numbers left out)."""
    table = {}
    for section in ("results", "groups"):
        for task, metrics in (results.get(section) or {}).items():
            for key, value in metrics.items():
                name = key.split(",")[0]
                if name in NOT_METRICS or "_stderr" in name or not isinstance(value, (int, float)):
                    continue
                table[(task, key)] = float(value)
    return table


def json_safe(results: dict) -> dict:
    """lm-eval results without the parts that are not JSON (config callables and the like become strings)."""
    return json.loads(json.dumps(results, default=str))
