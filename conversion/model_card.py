"""The model card (`README.md`) of an exported folder, written with `huggingface_hub.ModelCard`.

The YAML header carries what the Hub reads: `library_name`, `tags`, `pipeline_tag`, `license` (when given),
`base_model` (a converted decoder), `datasets` and the final evaluation metrics as `model-index` results.
The body gives the architecture, the effective context, the training objective and settings, the metrics,
a usage snippet naming the repo id (or the folder) and the paper citation.

    >>> card = model_card(model, "org/memory-tiny", training=json.load(open("runs/mt/metrics.json")))
    >>> card.save("hub/memory-tiny/README.md")
"""

from __future__ import annotations

import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from memory_models.modeling_memory import capabilities

CITATION = """@article{badger2026memory,
  title   = {Language Model Memory and Memory Models for Language},
  author  = {Badger, Benjamin L.},
  journal = {arXiv preprint arXiv:2602.13466},
  year    = {2026}
}"""

# metrics.json key suffix -> (model-index metric type, human-readable name); keys are `eval_<set>_<suffix>`.
METRICS = {
    "accuracy": ("accuracy", "token accuracy"),
    "entropy_ratio": ("entropy_ratio", "entropy ratio H_r = 1 - CE / ln V"),
    "loss": ("cross_entropy", "cross-entropy (nats)"),
}
# eval set -> the task it measures
EVAL_SETS = {"clm": "causal language modelling", "copy": "copy (second half repeats the first)",
             "autoencode": "reconstruction of the input from its embedding"}
TRAINING_SETTINGS = ("preset", "init_from", "encoder_from", "objective", "dataset", "context", "no_memory",
                     "freeze_encoder", "max_steps", "per_device_batch_size", "world_size",
                     "gradient_accumulation_steps", "learning_rate", "bf16", "seed")


def _auto_class(model) -> str:
    return "AutoModel" if capabilities(model).is_autoencoder else "AutoModelForCausalLM"


def eval_results(model_name: str, metrics: dict, dataset: str) -> list[EvalResult]:
    """`model-index` entries for the `eval_<set>_<metric>` values of a `metrics.json` `final` block."""
    results = []
    for key, value in sorted(metrics.items()):
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "eval" or parts[1] not in EVAL_SETS or parts[2] not in METRICS:
            continue
        metric_type, metric_name = METRICS[parts[2]]
        results.append(EvalResult(
            task_type="text-generation", task_name=EVAL_SETS[parts[1]], dataset_type=dataset,
            dataset_name=f"{dataset} (held out, {parts[1]} rows)", dataset_config=parts[1], dataset_split="test",
            metric_type=metric_type,
            metric_name=f"{parts[1]} {metric_name}", metric_value=round(float(value), 6),
        ))
    return results


def _settings_table(config: dict) -> str:
    rows = [f"| `{key}` | {config[key]} |" for key in TRAINING_SETTINGS
            if config.get(key) is not None and config.get(key) is not False]
    return "\n".join(["| setting | value |", "|---|---|", *rows])


def _metrics_table(results: list[EvalResult]) -> str:
    rows = [f"| {r.metric_name} | {r.metric_value:.4f} |" for r in results]
    return "\n".join(["| metric (held out) | value |", "|---|---:|", *rows])


def model_card(model, name: str, *, training: dict | None = None, base_model: str | None = None,
               datasets: list[str] | None = None, license: str | None = None) -> ModelCard:
    """The card of `model` exported as `name` (a repo id `org/name`, or the folder path).

    Args:
        model: the exported `PreTrainedModel`.
        name: what `from_pretrained` is given in the usage snippet (repo id, or the folder).
        training: a `metrics.json` summary of `memory-models train` (`final` metrics, `config` settings).
        base_model: the Hub id of the checkpoint this model was converted from (a pretrained decoder).
        datasets: Hub ids of the training data (default: the summary's `dataset`, when it is a Hub id).
        license: an SPDX-style Hub license id (`apache-2.0`, ...); omitted when not given.
    """
    config, training = model.config, training or {}
    settings = training.get("config", {})
    dataset = settings.get("dataset")
    datasets = datasets if datasets is not None else ([dataset] if dataset and "/" in dataset else None)
    results = eval_results(name, training.get("final", {}), dataset or "unknown") if training else []
    causal = _auto_class(model) == "AutoModelForCausalLM"
    data = ModelCardData(
        model_name=name, library_name="transformers", license=license, base_model=base_model, datasets=datasets,
        pipeline_tag="text-generation" if causal else "feature-extraction",
        tags=["memory-models", config.model_type, "custom_code"], eval_results=results or None,
    )
    n_params = sum(p.numel() for p in model.parameters())
    context = getattr(config, "max_position_embeddings", None)
    sections = [
        f"# {name}",
        f"A `{type(model).__name__}` (`model_type: {config.model_type}`, {n_params / 1e6:.2f}M parameters) from "
        "the memory-models package, an implementation of Badger (2026), *Language Model Memory and Memory Models "
        f"for Language* (arXiv 2602.13466). Effective context: {context or 'n/a'} tokens"
        + (f" ({config.num_memory_slots} memory slots x {config.chunk_size}-token chunks)."
           if hasattr(config, "num_memory_slots") and hasattr(config, "chunk_size") else "."),
        "## Usage",
        "```python\nfrom transformers import " + _auto_class(model) + ", AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{name}", trust_remote_code=True)\n'
        f'model = {_auto_class(model)}.from_pretrained("{name}", trust_remote_code=True)\n```',
        "Both calls take `trust_remote_code=True`: the config class is code shipped in this folder, and transformers "
        "asks before running it (an interactive [y/N] prompt) even when it only loads the tokenizer. The tokenizer "
        "itself is a plain `PreTrainedTokenizerFast` (`tokenizer.json`), which "
        f'`PreTrainedTokenizerFast.from_pretrained("{name}")` also loads without any flag.',
        "The code in this folder needs only `torch` and `transformers` (tested with transformers "
        f"{transformers.__version__}; supported range `>=5.0,<6`).",
    ]
    if base_model:
        sections.append(f"Converted from [`{base_model}`](https://huggingface.co/{base_model}).")
    if settings:
        sections += ["## Training", f"Trained with `memory-models train` for {training.get('steps', '?')} steps "
                     f"(objective `{settings.get('objective')}`).", _settings_table(settings)]
    if results:
        sections += ["## Evaluation", _metrics_table(results)]
    sections += ["## Citation", f"```bibtex\n{CITATION}\n```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
