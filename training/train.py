"""`memory-models train`: train any preset with any objective on the Hugging Face `Trainer`.

    memory-models train --preset memory-transformer-tiny --objective combined --max-steps 200 --output-dir runs/mt
    memory-models train --preset autoencoder-tiny --objective autoencode --context 8 --output-dir runs/ae
    memory-models train --preset memory-transformer-tiny --encoder-from runs/ae/final --freeze-encoder \\
        --objective blank_copy --output-dir runs/blank                        # the paper's curriculum, stage 2
    memory-models train --init-from runs/blank/final --objective copy --output-dir runs/copy
    memory-models train ... --resume                                         # continue the last complete checkpoint
    torchrun --nproc_per_node 2 -m memory_models.training.train --preset ...  # DDP (gloo on CPU, nccl on GPU)

Unknown `--key value` options go to `TrainingArguments` (`--warmup_steps 10 --gradient_accumulation_steps 2`).
The command line parses into a `training.job.TrainJob`; Python builds one directly and calls `run(job)`.
The objective's record (`training.objectives`) says how batches are built, what the run evaluates and what model
it needs. The output folder gets Hub-ready `checkpoint-N/` folders (weights, config with `auto_map`, code,
tokenizer), `final/` (exported with `conversion.export_to_hub.export_model`), `metrics.json` and `loss_curve.png`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from transformers import PreTrainedModel, TrainingArguments, set_seed

from memory_models.modeling_memory import capabilities  # importing it registers our Auto classes
from memory_models.modeling_memory.native_decoders import same_architecture
from memory_models.configuration import build_model as build_from_config
from memory_models.configuration import get_preset
from memory_models.conversion.adapters import is_peft_model, merge_adapter, save_extras
from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion import loading, safe_io
from memory_models.training.metrics import preprocess_logits_for_metrics
from memory_models.training.data.corpora import (
    check_training_targets, count_blank_documents, filter_full_length, load_corpus, tokenize_corpus,
)
from memory_models.training.job import TrainJob
from memory_models.training.lora import apply_lora
from memory_models.training.loop import loop_defaults
from memory_models.training.objectives import Objective, all_objectives, get_objective, objective_parts
from memory_models.training.objectives.batch import ObjectiveCollator
from memory_models.training.plot import plot_beside, plot_training
from memory_models.training.run_folder import prepare_run_folder, run_identity, run_inputs
from memory_models.training.data.tokenizer import load_default_tokenizer, special_token_ids
from memory_models.training.trainer import (
    STREAM_LOSS_NAMES, MemoryTrainer, RoutingCollator, StreamingAccuracy, checkpoint_step, forward_arguments,
    last_complete_checkpoint,
)


# ---------------------------------------------------------------------------------------------- model
def load_tokenizer(path: str | None, trust_remote_code: bool = False):
    """`--tokenizer DIR`, or the package's default python-docs tokenizer; a missing pad token becomes eos."""
    if path is None:
        return load_default_tokenizer()
    tokenizer = loading.load_tokenizer(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def token_ids(tokenizer) -> dict[str, int]:
    """Special ids for the model config: pad/bos/eos always, blank and copy delimiter when the tokenizer has them."""
    try:
        return special_token_ids(tokenizer)
    except ValueError:  # a foreign tokenizer without our reserved delimiter token
        ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
               "eos_token_id": tokenizer.eos_token_id, "blank_token_id": tokenizer.pad_token_id}
        return {key: value for key, value in ids.items() if value is not None}


def _set_config_flags(config, job: TrainJob) -> None:
    """Apply --no-memory / --freeze-encoder to a config, with a clear error for configs without them."""
    for flag, field_name in (("no_memory", "no_memory"), ("freeze_encoder", "freeze_encoder")):
        if getattr(job, flag):
            if not hasattr(config, field_name):
                raise ValueError(f"--{flag.replace('_', '-')} needs a memory model; {config.model_type!r} has no "
                                 f"`{field_name}`.")
            setattr(config, field_name, True)


def preset_config(job: TrainJob, tokenizer):
    """The preset's config with the tokenizer's vocabulary size and special token ids."""
    vocab_size = job.vocab_size or len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"--vocab-size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens).")
    ids = token_ids(tokenizer)
    base = {k: v for k, v in ids.items() if k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    config = get_preset(job.preset, vocab_size=vocab_size, **base)
    extra = {k: v for k, v in ids.items() if k not in base and hasattr(config, k)}
    config = get_preset(job.preset, vocab_size=vocab_size, **base, **extra) if extra else config
    _set_config_flags(config, job)
    return config


def load_pretrained(path: str, config=None, *, allow_missing: bool = False, option: str = "--init-from",
                    trust_remote_code: bool = False):
    """A saved model (our classes or any transformers model): the causal-LM class where there is one.

    Missing or unused checkpoint tensors, NaN/inf weights, a truncated weights file, a missing folder and code
    shipped with the folder (without `trust_remote_code`) are `ValueError`s (`conversion.loading.load_model`);
    `allow_missing` (`--allow-missing-weights`) accepts missing or unused tensors.
    """
    return loading.load_model(path, config=config, allow_missing=allow_missing, option=option,
                              trust_remote_code=trust_remote_code)


def find_encoder(model) -> torch.nn.Module:
    """The encoder sub-module of an autoencoder or memory model (the shortest module path named `encoder`)."""
    names = [name for name, _ in model.named_modules() if name.split(".")[-1] == "encoder"]
    if not names:
        raise ValueError(f"{type(model).__name__} has no `encoder` sub-module to copy.")
    return model.get_submodule(min(names, key=len))


def base_encoder(model: torch.nn.Module) -> PreTrainedModel:
    """The module whose `last_hidden_state` is the embedding: strip LM heads and wrappers.

    Memory autoencoders give their `.encoder`, memory models their encoder, causal / masked LMs their base
    model (`LlamaForCausalLM` -> `LlamaModel`, `MaskedMixerForCausalLM` -> `MaskedMixerModel`).
    """
    if not isinstance(model, PreTrainedModel):
        raise ValueError(f"the encoder must be a transformers PreTrainedModel, got {type(model).__name__}")
    if capabilities(model).has_encoder:
        encoder = getattr(model, "encoder", None) or getattr(getattr(model, "model", None), "encoder", None)
        if encoder is None:
            raise ValueError(f"this {type(model).__name__} has no encoder (encoder_config=None)")
        return encoder
    return model.base_model


# Encoder-config fields that change what an encoder computes from the same weights (the shapes are checked apart).
ENCODER_COMPUTE_FIELDS = ("model_type", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
                          "rms_norm_eps", "layer_norm_eps", "rope_theta", "rope_parameters", "rope_scaling",
                          "kernel_size", "num_heads", "causal", "attention_bias", "mlp_bias")


def with_encoder_of(config, source_dir: str, trust_remote_code: bool = False):
    """`config` (a memory model's or an autoencoder's) whose `encoder_config` is the one of the encoder that
    `copy_encoder` copies from `source_dir` (an autoencoder's or memory model's encoder, or a causal LM's base model),
    so that the model's memories are the ones that encoder computes (heads, rotary base, kernel, length, width: a
    width other than the decoder's gets the projection). The vocabulary must be the model's."""
    source = loading.load_config(source_dir, option="--encoder-from", trust_remote_code=trust_remote_code)
    if capabilities(source).has_encoder:
        source = source.encoder_config
        if source is None:
            raise ValueError(f"{source_dir} holds a model without an encoder (encoder_config=None)")
    own = config.encoder_config
    if own is not None and source.vocab_size != own.vocab_size:
        raise ValueError(f"the encoder of {source_dir} has a vocabulary of {source.vocab_size} tokens, the model "
                         f"{own.vocab_size}: train both with the same tokenizer")
    return type(config).from_dict({**config.to_dict(), "encoder_config": source.to_dict()})


def copy_encoder(model, source_dir: str, allow_missing: bool = False, trust_remote_code: bool = False) -> None:
    """Load the encoder of the model saved in `source_dir` (`base_encoder`) into `model`'s encoder.

    Shapes must match, and so must the fields that change what the same weights compute (`ENCODER_COMPUTE_FIELDS`:
    the heads, the rotary base, ...): a model built for that encoder (`with_encoder_of`) has both.
    """
    source_encoder = base_encoder(load_pretrained(source_dir, allow_missing=allow_missing, option="--encoder-from",
                                                  trust_remote_code=trust_remote_code))
    source = source_encoder.state_dict()
    target = find_encoder(model)
    shapes = {name: tensor.shape for name, tensor in target.state_dict().items()}
    mismatched = [f"{name}: {tuple(tensor.shape)} in {source_dir} vs {tuple(shapes[name])} in the model"
                  for name, tensor in source.items() if name in shapes and tensor.shape != shapes[name]]
    if mismatched:
        raise ValueError(f"the encoder of {source_dir} does not fit the model's encoder (shapes differ): "
                         + "; ".join(mismatched[:4]) + ". Use a preset whose encoder config (and vocabulary) matches.")
    differing = same_architecture(source_encoder.config, target.config, ENCODER_COMPUTE_FIELDS)
    if differing:
        raise ValueError(f"the encoder of {source_dir} computes differently from the model's encoder with the same "
                         f"weights ({'; '.join(differing)}; source != model): build the model for it "
                         "(train.with_encoder_of, which --encoder-from with --preset does)")
    missing, unexpected = target.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise ValueError(f"the encoder of {source_dir} does not fit the model's encoder: missing {missing}, "
                         f"unexpected {unexpected}. Use a preset whose encoder config matches.")
    if hasattr(model.config, "freeze_encoder"):  # the memory model and the autoencoder
        model.apply_freezing()


def build_model(job: TrainJob, tokenizer):
    """A fresh preset model or a loaded one (`--init-from`), with an optional copied/frozen encoder."""
    set_seed(job.seed)
    if job.init_from:
        config = loading.load_config(job.init_from, option="--init-from", trust_remote_code=job.trust_remote_code)
        if capabilities(config).native and get_objective(job.objective).needs == "memory":
            raise ValueError(f"--init-from {job.init_from} is a plain {config.model_type!r} causal LM, which has no "
                             f"memory to read for the {job.objective!r} objective. Make it a memory model's decoder "
                             f"first: memory-models convert --decoder {job.init_from} --output DIR, then --init-from "
                             "DIR (add --no-memory there for the no-memory control).")
        _set_config_flags(config, job)  # before loading: a --no-memory model is built without an encoder
        model = load_pretrained(job.init_from, config, allow_missing=job.allow_missing_weights,
                                trust_remote_code=job.trust_remote_code)
    else:
        config = preset_config(job, tokenizer)
        if job.encoder_from and getattr(config, "encoder_config", None) is not None:
            config = with_encoder_of(config, job.encoder_from, job.trust_remote_code)
        model = build_from_config(config)
    return prepare_model(model, job, tokenizer)


def prepare_model(model, job: TrainJob, tokenizer):
    """What `job` asks of its model, whether `build_model` made it or the caller gave it to `run`: `--no-memory` /
    `--freeze-encoder` on its config, the `--encoder-from` weights (frozen if asked), a vocabulary that holds the
    tokenizer, and a model of the objective's kind."""
    _set_config_flags(model.config, job)
    if job.encoder_from:
        copy_encoder(model, job.encoder_from, job.allow_missing_weights, job.trust_remote_code)
    elif hasattr(model.config, "freeze_encoder"):  # the memory model and the autoencoder
        model.apply_freezing()
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(f"the model's vocab_size {model.config.vocab_size} < len(tokenizer) {len(tokenizer)}.")
    check_objective(model, job.objective)
    return model


def check_objective(model, objective: str) -> None:
    """An autoencoder objective needs an autoencoder; every other objective needs a causal LM."""
    needs = get_objective(objective).needs
    is_autoencoder = capabilities(model).is_autoencoder
    if needs == "autoencoder" and not is_autoencoder:
        raise ValueError(f"objective {objective!r} needs an autoencoder preset, got model_type "
                         f"{model.config.model_type!r}.")
    if needs != "autoencoder" and is_autoencoder:
        usable = " or ".join(o.name for o in all_objectives() if o.needs == "autoencoder")
        raise ValueError(f"objective {objective!r} needs a causal model, got the autoencoder "
                         f"{type(model).__name__}; use --objective {usable}.")


def fits(objective: Objective, config) -> bool:
    """Whether a model of `config` is one `objective` is evaluated on (see `Objective.needs`)."""
    family = capabilities(config)
    if objective.needs == "autoencoder":
        return family.is_autoencoder
    return family.reads_memory if objective.needs == "memory" else not family.is_autoencoder


def default_learning_rate(config) -> float:
    """The paper's learning rates: 2e-4 for transformers, 5e-4 for (attention-free) mixers, 5e-5 for a pretrained-size
    (>= 2048) Llama decoder."""
    decoder = getattr(config, "decoder_config", None) or config
    if not capabilities(decoder).has_attention:
        return 5e-4
    return 5e-5 if decoder.hidden_size >= 2048 else 2e-4


def model_context(config) -> int:
    """The model's context (`max_position_embeddings`)."""
    context = getattr(config, "max_position_embeddings", None)
    if not context:
        raise ValueError(f"{config.model_type!r} config has no max_position_embeddings: pass --context.")
    return int(context)


# ---------------------------------------------------------------------------------------------- data
def _with_objective(dataset, objective: str):
    """Tag every row with the objective its eval batches are built with (see `RoutingCollator`)."""
    return dataset.map(lambda row: {"objective": objective})


def evaluated_objectives(job: TrainJob, config) -> list[Objective]:
    """The objectives a run evaluates, in registry order: those with an eval set of their own that fit the model
    and are watched or trained (for a memory model: `clm`, `copy` and `blank_copy`, whichever one trains)."""
    trained = {part.name for part in objective_parts(job.objective)}
    return [objective for objective in all_objectives() if objective.evaluation is not None
            and (objective.watch or objective.name in trained) and fits(objective, config)]


def objective_rows(objective: Objective, texts, tokenizer, context: int, config, job: TrainJob):
    """The rows of `objective` from a split's documents: its own (`Objective.rows`), the documents cut into rows
    of `context` tokens (truncated, or packed with `--pack`), or a mixture's (`mixture_rows`)."""
    if objective.parts:
        return mixture_rows(objective, texts, tokenizer, context, config, job)
    if objective.rows is not None:
        return objective.rows(texts, tokenizer, config, context=context, pack=job.pack, seed=job.seed)
    return tokenize_corpus(texts, tokenizer, context, mode="pack" if job.pack else "truncate")


def mixture_rows(mixture: Objective, texts, tokenizer, context: int, config, job: TrainJob) -> datasets.Dataset:
    """A mixture's training rows: each part's rows, tagged with the part (`RoutingCollator` builds each row's batch
    with it), in equal numbers: a smaller part is repeated (each repeat in its own seeded order) up to the largest
    part's count, so that no row of any part is left out."""
    parts = objective_parts(mixture.name)
    made = {part.name: objective_rows(part, texts, tokenizer, context, config, job) for part in parts}
    if not all(isinstance(rows, datasets.Dataset) for rows in made.values()):
        raise ValueError(f"mixture {mixture.name!r} needs a corpus of known size (not a streamed one) to draw its "
                         "parts in equal numbers; use --train-documents with a local or generated corpus")
    empty = [name for name, rows in made.items() if len(rows) == 0]
    if empty:
        raise ValueError(f"mixture {mixture.name!r}: its part(s) {empty} made no rows from this corpus")
    count = max(len(rows) for rows in made.values())
    tagged = []
    for name, rows in made.items():
        repeats = -(-count // len(rows))
        rows = datasets.concatenate_datasets([rows.shuffle(seed=job.seed + k) for k in range(repeats)])
        rows = rows.select(range(count)).map(
            lambda row, name=name: {"objective": name, **({} if "labels" in row else {"labels": None})})
        tagged.append(rows.select_columns(["input_ids", "attention_mask", "labels", "objective"]))
    return datasets.concatenate_datasets(tagged)


def build_datasets(job: TrainJob, tokenizer, context: int, config):
    """The training rows of the job's objective and one eval set per evaluated objective, tagged with it: its
    held-out rows (at most `eval_documents`), or (its `evaluation` is `"full_length"`) those without padding (copy
    accuracy on whole held-out documents, as in the paper)."""
    train_text = load_corpus(job.dataset, "train", text_column=job.text_column, num_documents=job.train_documents,
                             seed=job.seed)
    train = objective_rows(get_objective(job.objective), train_text, tokenizer, context, config, job)
    check_corpus(train_text, train, job)
    test_text = load_corpus(job.dataset, "test", text_column=job.text_column, num_documents=job.eval_documents,
                            seed=job.seed)
    held_out, eval_sets, missing = {}, {}, []  # held_out: (row maker, rows kind) -> rows, made once
    for objective in evaluated_objectives(job, config):
        if (objective.rows, "all") not in held_out:
            rows = objective_rows(objective, test_text, tokenizer, context, config, job)
            if hasattr(rows, "select") and len(rows) > job.eval_documents:  # long packed documents make many rows
                rows = rows.select(range(job.eval_documents))
            held_out[objective.rows, "all"] = rows
        key = objective.rows, objective.evaluation
        if key not in held_out:
            held_out[key] = filter_full_length(held_out[objective.rows, "all"])
        if objective.evaluation == "full_length" and hasattr(held_out[key], "__len__") and len(held_out[key]) == 0:
            missing.append(objective.name)
        else:
            eval_sets[objective.name] = _with_objective(held_out[key], objective.name)
    if missing:
        print(f"warning: no full-length held-out rows at context {context}: no {', '.join(missing)} evaluation",
              file=sys.stderr)
    return train, eval_sets


def check_corpus(text, rows, job: TrainJob) -> None:
    """Stop before training if the training corpus gives no targets (`training.data.corpora.check_training_targets`);
    whitespace-only documents count as empty."""
    if not isinstance(text, datasets.Dataset):
        return  # streaming: counting would consume the stream
    documents, blank = len(text), count_blank_documents(text)
    source = f"{job.dataset} (train split)"
    if blank == documents:
        raise ValueError(f"the corpus {source!r} gives no training targets: all {documents} documents are empty "
                         "or whitespace-only.")
    min_tokens = 2 if get_objective(job.objective).shifted else 1  # a next-token target needs two tokens
    check_training_targets(rows, source, documents, min_tokens=min_tokens)


def build_collator(model, objective: str, eval_objectives, context: int, examples=None):
    """One `ObjectiveCollator` per objective used (training, a mixture's parts, evaluation), routed per row. Each
    first builds a batch of its row in `examples` (objective -> a row of its data): a layout an objective cannot
    build at this context (copy needs an even length) stops the run before it starts."""
    trained = [part.name for part in objective_parts(objective)]
    names = {*trained, *eval_objectives}
    collators = {name: ObjectiveCollator.from_config(name, model.config, max_length=context) for name in names}
    for name, example in (examples or {}).items():
        try:
            collators[name]([example])
        except ValueError as error:
            raise ValueError(f"the {name!r} objective cannot use --context {context}: {error}") from None
    return RoutingCollator(collators, trained[0], keep=forward_arguments(model))


def metric_functions(config, eval_objectives) -> dict:
    """Per eval set: a streaming token-accuracy `compute_metrics` and the argmax `preprocess_logits_for_metrics`."""
    boundaries = config.chunk_size if getattr(config, "paper_chunk_targets", False) else None
    return {name: (StreamingAccuracy(shift=get_objective(name).shifted, exclude_chunk_boundaries=boundaries),
                   preprocess_logits_for_metrics) for name in eval_objectives}


# ---------------------------------------------------------------------------------------------- trainer
def _distributed_cpu() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def training_arguments(job: TrainJob, config) -> TrainingArguments:
    """`TrainingArguments` of a run: the package's loop (`training.loop.loop_defaults`) with the paper's appendix S1
    settings, evaluation and checkpoints every `eval_steps`, then `job.trainer_options` over them."""
    eval_steps = job.eval_steps or max(1, job.max_steps // 5)
    settings = loop_defaults(steps=job.max_steps, batch_size=job.batch_size, seed=job.seed,
                             learning_rate=job.learning_rate or default_learning_rate(config),
                             warmup_steps=min(500, job.max_steps // 10))
    settings.update({
        "output_dir": job.output_dir, "eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps",
        "save_steps": job.save_steps or eval_steps, "logging_steps": max(1, min(eval_steps, job.max_steps // 50)),
        "batch_eval_metrics": True, "disable_tqdm": not sys.stderr.isatty(), "ddp_find_unused_parameters": False,
        "bf16": job.bf16, "use_cpu": not torch.cuda.is_available(),
    })
    if _distributed_cpu():
        settings["ddp_backend"] = "gloo"
    settings.update(job.trainer_options)
    hub_repo(job)  # a Trainer push without a repo is refused here
    settings["push_to_hub"] = False  # final/ is published through our export (lint, model card), not the Trainer
    training_args = TrainingArguments(**settings)
    if training_args.fsdp and not torch.cuda.is_available():
        raise ValueError(f"--fsdp {training_args.fsdp!r} on CPU: accelerate ignores FSDP there and would train "
                         "replicated copies; shard on CPU with training.fsdp_cpu (torch fully_shard) or use GPUs")
    return training_args


def hub_repo(job: TrainJob) -> str | None:
    """The repo `final/` is pushed to at the end: `--push-to-hub ORG/NAME`, or the Trainer's own options
    `--push_to_hub --hub_model_id ORG/NAME`; `None` for no push."""
    options = job.trainer_options
    if not options.get("push_to_hub"):
        return job.push_to_hub
    if not (job.push_to_hub or options.get("hub_model_id")):
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME (or use --push-to-hub ORG/NAME).")
    return job.push_to_hub or options["hub_model_id"]


def build_trainer(job: TrainJob, tokenizer, model, callbacks=()):
    """The `MemoryTrainer` of a run (datasets, collator, metrics, arguments)."""
    context = job.context or model_context(model.config)
    if context > model_context(model.config):
        raise ValueError(f"--context {context} exceeds the model's context {model_context(model.config)}.")
    training_args = training_arguments(job, model.config)  # a bad option stops before the data work
    train, eval_sets = build_datasets(job, tokenizer, context, model.config)
    functions = metric_functions(model.config, eval_sets)
    compute_metrics, preprocess = next(iter(functions.values()))  # swapped per eval set by MemoryTrainer
    parts = [part.name for part in objective_parts(job.objective)]
    if len(parts) > 1:  # a mixture: the first row of each part
        tags = train["objective"]
        examples = {name: train[tags.index(name)] for name in parts}
    else:
        examples = {job.objective: row} if (row := next(iter(train), None)) is not None else {}
    examples.update({name: row for name, data in eval_sets.items() if (row := next(iter(data), None)) is not None})
    return MemoryTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_sets,
        data_collator=build_collator(model, job.objective, eval_sets, context, examples),
        processing_class=tokenizer,
        callbacks=list(callbacks),
        vocab_size=model.config.vocab_size,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess,
        metric_functions=functions,
    )


# ---------------------------------------------------------------------------------------------- outputs
def last_evaluation(trainer) -> dict | None:
    """The metrics of an evaluation already run at the final step (for every eval set), else `None`."""
    step, names = trainer.state.global_step, list(trainer.eval_dataset)
    logged = [h for h in trainer.state.log_history if h.get("step") == step]
    metrics = {k: v for h in logged for k, v in h.items() if k.startswith("eval_") or k == "epoch"}
    return metrics if all(f"eval_{name}_loss" in metrics for name in names) else None


def summarise(job: TrainJob, trainer, final_metrics: dict, seconds: float, resumed_from) -> dict:
    """The `metrics.json` content: final eval metrics, the run's configuration, steps and time."""
    model, targs, state = trainer.model, trainer.args, trainer.state
    history = [(h["step"], h["loss"]) for h in state.log_history if "loss" in h]
    streams = {key: [(h["step"], h[key]) for h in state.log_history if key in h] for key in STREAM_LOSS_NAMES}
    evals = {key: [(h["step"], h[key]) for h in state.log_history if key in h]
             for key in sorted({k for h in state.log_history for k in h if k.startswith("eval_") and
                                k.endswith(("_loss", "_accuracy"))})}
    return {
        "final": final_metrics,
        "steps": state.global_step,
        "train_seconds": round(seconds, 2),
        "resumed_from": resumed_from,
        "config": {
            "preset": job.preset, "init_from": job.init_from, "encoder_from": job.encoder_from,
            "objective": job.objective, "dataset": job.dataset, "model_type": model.config.model_type,
            "model_class": type(model).__name__, "no_memory": getattr(model.config, "no_memory", None),
            "freeze_encoder": getattr(model.config, "freeze_encoder", None),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "context": job.context or model_context(model.config), "vocab_size": model.config.vocab_size,
            "learning_rate": targs.learning_rate, "per_device_batch_size": targs.per_device_train_batch_size,
            "world_size": targs.world_size, "gradient_accumulation_steps": targs.gradient_accumulation_steps,
            "max_steps": targs.max_steps, "seed": targs.seed, "bf16": targs.bf16,
        },
        "train_loss_history": history,
        # several loss streams (combined objective): loss = clm_loss_weight * loss_clm + copy_loss_weight * loss_copy
        "train_stream_loss_history": {key: value for key, value in streams.items() if value},
        "eval_history": evals,
    }


def write_outputs(output_dir, trainer, tokenizer, summary: dict, overwrite: bool = False,
                  push_to_hub: str | None = None) -> None:
    """`final/` (Hub-ready export, replaced atomically, pushed to `push_to_hub` if given), `metrics.json` and
    `loss_curve.png` (and `.svg`, when matplotlib is installed) in `output_dir` (main process only)."""
    output_dir = Path(output_dir)
    message = (f"memory-models train {output_dir.name}: {summary['config']['objective']}, "
               f"{summary['steps']} steps")
    export = dict(training=summary, repo_id=push_to_hub, push=bool(push_to_hub), commit_message=message,
                  overwrite=overwrite)
    if is_peft_model(trainer.model):
        _write_lora_outputs(output_dir, trainer, tokenizer, export)
    elif trainer.is_fsdp_enabled:
        trainer.save_model(str(output_dir / "final"))  # gathers/writes shards per the FSDP state-dict type
    elif trainer.is_world_process_zero():
        export_model(trainer.model, output_dir / "final", tokenizer, **export)
    if not trainer.is_world_process_zero():
        return
    safe_io.write_text_atomic(output_dir / "metrics.json", json.dumps(summary, indent=2, default=str))
    if summary["train_loss_history"] or any(summary["eval_history"].values()):
        plot_beside(output_dir / "loss_curve.json", lambda stem: plot_training(summary, stem))


def _write_lora_outputs(output_dir: Path, trainer, tokenizer, export: dict) -> None:
    """LoRA run: `adapter/` (adapter + extras + tokenizer) and `final/`, the complete merged Hub-ready model."""
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)

    def write_adapter(staging):
        model.save_pretrained(staging)
        save_extras(model, staging)
        tokenizer.save_pretrained(staging)

    # replaced as a whole, as before (runs of earlier versions left adapter/ without a marker)
    safe_io.write_folder(output_dir / "adapter", write_adapter, kind="adapter", overwrite=True,
                         option="--output-dir's adapter/")
    export_model(merge_adapter(model), output_dir / "final", tokenizer, **export)


def format_metrics(metrics: dict) -> str:
    """A two-column table of the (rounded) eval metrics."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in sorted(metrics.items())
            if not k.endswith(("_runtime", "_per_second"))]
    width = max((len(k) for k, _ in rows), default=10)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def is_main_process() -> bool:
    """True in a single process and in the process of global rank 0 of a `torchrun` / `accelerate` launch."""
    return int(os.environ.get("RANK", "0")) == 0


def run(job: TrainJob, callbacks=(), model=None) -> dict:
    """Train per `job` and return the `metrics.json` summary (also written to the output folder).

    `model` (optional) replaces the one `job` describes (`preset` / `init_from`), e.g. a custom config; the job's
    `encoder_from`, `freeze_encoder` and `no_memory` apply to it as to a preset (`prepare_model`).
    The main process holds the lock of `job.output_dir` throughout (`conversion.safe_io.locked`): a second writer
    is refused naming this process. An interrupt raises `KeyboardInterrupt("interrupted at step N: ...")`.
    """
    inputs = run_inputs(job)
    safe_io.check_target(job.output_dir, kind="run", overwrite=True, option="--output-dir", inputs=inputs)
    lock = safe_io.locked(job.output_dir) if is_main_process() else contextlib.nullcontext()
    with lock:
        return _run(job, callbacks, model, inputs)


def _run(job: TrainJob, callbacks, model, inputs) -> dict:
    tokenizer_path = job.tokenizer
    if tokenizer_path is None and job.init_from and (Path(job.init_from) / "tokenizer.json").is_file():
        tokenizer_path = job.init_from  # a later curriculum stage keeps the tokenizer its checkpoint was trained with
    tokenizer = load_tokenizer(tokenizer_path, job.trust_remote_code)
    given = model is not None  # a model the caller built: the job's preset did not make it
    model = prepare_model(model, job, tokenizer) if given else build_model(job, tokenizer)
    identity = run_identity(job, model.config, tokenizer)
    folder = dict(resume=job.resume, overwrite=job.overwrite, inputs=inputs)
    prepare_run_folder(job.output_dir, identity, write=False, **folder)
    if job.lora_r:
        model = apply_lora(model, job.lora_r, job.lora_alpha, job.lora_dropout, job.lora_target_modules)
    trainer = build_trainer(job, tokenizer, model, callbacks)
    if trainer.is_world_process_zero():  # records the run (and fails here if the folder is not writable)
        prepare_run_folder(job.output_dir, identity, **folder)
    trainer.accelerator.wait_for_everyone()
    resume = last_complete_checkpoint(job.output_dir) if job.resume else None
    if job.resume and resume is None and trainer.is_world_process_zero():
        print(f"--resume: no complete checkpoint in {job.output_dir}; starting from step 0", file=sys.stderr)
    if resume is not None and trainer.is_world_process_zero():
        print(f"--resume: resuming from {resume}")
    start = time.perf_counter()
    try:
        if resume is not None and checkpoint_step(resume) >= trainer.args.max_steps:
            trainer.restore_finished_run(resume)  # nothing left to train: no extra step
        else:
            trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt as error:
        raise KeyboardInterrupt(interrupted_message(trainer.state.global_step, job.output_dir)) from error
    seconds = time.perf_counter() - start
    final_metrics = last_evaluation(trainer) or trainer.evaluate()
    summary = summarise(job, trainer, final_metrics, seconds, resume)
    if given:
        summary["config"]["preset"] = None  # metrics.json and the plot name the given model's class instead
    write_outputs(job.output_dir, trainer, tokenizer, summary, overwrite=job.overwrite, push_to_hub=hub_repo(job))
    if trainer.is_world_process_zero():
        print(f"\nfinished {trainer.state.global_step} steps in {seconds:.1f} s; final evaluation:")
        print(format_metrics(final_metrics))
        print(f"outputs: {job.output_dir}/final (Hub-ready), metrics.json, loss_curve.png")
    return summary


def interrupted_message(step: int, output_dir) -> str:
    """What an interrupted run says: the step, and where `--resume` continues from."""
    checkpoint = last_complete_checkpoint(output_dir)
    where = f"continues from {Path(checkpoint).name}" if checkpoint else "no checkpoint yet: starts over"
    return f"interrupted at step {step}: rerun with --resume ({where})"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (`memory-models train`, `python -m memory_models.training.train`,
    `torchrun -m memory_models.training.train`)."""
    run(TrainJob.from_argv(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
