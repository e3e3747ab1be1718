"""`memory-models train`: train any preset with any objective on the Hugging Face `Trainer`.

    memory-models train --preset memory-transformer-tiny --objective combined --max-steps 200 --output-dir runs/mt
    memory-models train --preset autoencoder-tiny --objective autoencode --context 8 --output-dir runs/ae
    memory-models train --preset memory-transformer-tiny --encoder-from runs/ae/final --freeze-encoder \\
        --objective blank_copy --output-dir runs/blank                        # the paper's curriculum, stage 2
    memory-models train --init-from runs/blank/final --objective copy --output-dir runs/copy
    memory-models train ... --resume                                         # continue the last complete checkpoint
    torchrun --nproc_per_node 2 -m memory_models.training.train --preset ...  # DDP (gloo on CPU, nccl on GPU)

Unknown `--key value` options go to `TrainingArguments` (`--warmup_steps 10 --gradient_accumulation_steps 2`).
The output folder gets Hub-ready `checkpoint-N/` folders (weights, config with `auto_map`, code, tokenizer),
`final/` (exported with `conversion.export_to_hub.export_model`), `metrics.json` and `loss_curve.png`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed

import memory_models.modeling_memory  # noqa: F401  (registers our Auto classes)
from memory_models.configuration import build_model as build_from_config
from memory_models.configuration import get_preset
from memory_models.conversion.adapters import is_peft_model, merge_adapter, save_extras
from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion import loading, safe_io
from memory_models.training.metrics import preprocess_logits_for_metrics
from memory_models.training.data.corpora import (
    check_training_targets, count_blank_documents, filter_full_length, load_corpus, tokenize_corpus,
)
from memory_models.training.arguments import train_parser
from memory_models.training.lora import apply_lora
from memory_models.training.data.objectives import ObjectiveCollator
from memory_models.training.plot import plot_beside, plot_training
from memory_models.training.run_folder import prepare_run_folder, run_identity, run_inputs
from memory_models.training.data.tokenizer import load_default_tokenizer, special_token_ids
from memory_models.training.trainer import (
    STREAM_LOSS_NAMES, MemoryTrainer, RoutingCollator, StreamingAccuracy, checkpoint_step, forward_arguments,
    last_complete_checkpoint,
)

AUTOENCODER_TYPE = "memory_autoencoder"
MEMORY_TYPES = ("memory_model", "recurrent_memory")
MIXER_TYPE = "masked_mixer"


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Parse our options; the rest must be `--key value` TrainingArguments options."""
    args, extras = train_parser().parse_known_args(argv)
    if args.preset is None and args.init_from is None:
        raise ValueError("Pass --preset NAME or --init-from DIR.")
    if args.freeze_encoder and args.encoder_from is None and args.init_from is None:
        raise ValueError("--freeze-encoder needs --encoder-from DIR (or --init-from a model with an encoder).")
    for name in ("max_steps", "batch_size", "eval_steps", "save_steps", "context", "eval_documents"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    return args, extras


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


def _set_config_flags(config, args) -> None:
    """Apply --no-memory / --freeze-encoder to a config, with a clear error for configs without them."""
    for flag, field_name in (("no_memory", "no_memory"), ("freeze_encoder", "freeze_encoder")):
        if getattr(args, flag):
            if not hasattr(config, field_name):
                raise ValueError(f"--{flag.replace('_', '-')} needs a memory model; {config.model_type!r} has no "
                                 f"`{field_name}`.")
            setattr(config, field_name, True)


def preset_config(args, tokenizer):
    """The preset's config with the tokenizer's vocabulary size and special token ids."""
    vocab_size = args.vocab_size or len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"--vocab-size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens).")
    ids = token_ids(tokenizer)
    base = {k: v for k, v in ids.items() if k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    config = get_preset(args.preset, vocab_size=vocab_size, **base)
    extra = {k: v for k, v in ids.items() if k not in base and hasattr(config, k)}
    config = get_preset(args.preset, vocab_size=vocab_size, **base, **extra) if extra else config
    _set_config_flags(config, args)
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


def copy_encoder(model, source_dir: str, allow_missing: bool = False, trust_remote_code: bool = False) -> None:
    """Load the encoder weights of the model saved in `source_dir` into `model`'s encoder (shapes must match)."""
    source = find_encoder(load_pretrained(source_dir, allow_missing=allow_missing, option="--encoder-from",
                                          trust_remote_code=trust_remote_code)).state_dict()
    target = find_encoder(model)
    shapes = {name: tensor.shape for name, tensor in target.state_dict().items()}
    mismatched = [f"{name}: {tuple(tensor.shape)} in {source_dir} vs {tuple(shapes[name])} in the model"
                  for name, tensor in source.items() if name in shapes and tensor.shape != shapes[name]]
    if mismatched:
        raise ValueError(f"the encoder of {source_dir} does not fit the model's encoder (shapes differ): "
                         + "; ".join(mismatched[:4]) + ". Use a preset whose encoder config (and vocabulary) matches.")
    missing, unexpected = target.load_state_dict(source, strict=False)
    if missing or unexpected:
        raise ValueError(f"the encoder of {source_dir} does not fit the model's encoder: missing {missing}, "
                         f"unexpected {unexpected}. Use a preset whose encoder config matches.")
    if hasattr(model.config, "freeze_encoder"):  # the memory model and the autoencoder
        model.apply_freezing()


def build_model(args, tokenizer):
    """A fresh preset model or a loaded one (`--init-from`), with an optional copied/frozen encoder."""
    set_seed(args.seed)
    if args.init_from:
        config = loading.load_config(args.init_from, option="--init-from", trust_remote_code=args.trust_remote_code)
        ours = (*MEMORY_TYPES, AUTOENCODER_TYPE, MIXER_TYPE)
        if config.model_type not in ours and args.objective in ("copy", "blank_copy", "combined"):
            raise ValueError(f"--init-from {args.init_from} is a plain {config.model_type!r} causal LM, which has no "
                             f"memory to read for the {args.objective!r} objective. Make it a memory model's decoder "
                             f"first: memory-models convert --decoder {args.init_from} --output DIR, then --init-from "
                             "DIR (add --no-memory there for the no-memory control).")
        _set_config_flags(config, args)
        model = load_pretrained(args.init_from, config, allow_missing=args.allow_missing_weights,
                                trust_remote_code=args.trust_remote_code)
        if hasattr(config, "freeze_encoder"):  # --freeze-encoder set on the loaded config
            model.apply_freezing()
    else:
        model = build_from_config(preset_config(args, tokenizer))
    if args.encoder_from:
        copy_encoder(model, args.encoder_from, args.allow_missing_weights, args.trust_remote_code)
    if model.config.vocab_size < len(tokenizer):
        raise ValueError(f"the model's vocab_size {model.config.vocab_size} < len(tokenizer) {len(tokenizer)}.")
    check_objective(model, args.objective)
    return model


def check_objective(model, objective: str) -> None:
    """`autoencode` needs an autoencoder; every other objective needs a causal LM."""
    is_autoencoder = model.config.model_type == AUTOENCODER_TYPE
    if objective == "autoencode" and not is_autoencoder:
        raise ValueError(f"objective 'autoencode' needs an autoencoder preset, got model_type "
                         f"{model.config.model_type!r}.")
    if objective != "autoencode" and is_autoencoder:
        raise ValueError(f"objective {objective!r} needs a causal model, got the autoencoder "
                         f"{type(model).__name__}; use --objective autoencode.")


def default_learning_rate(config) -> float:
    """The paper's learning rates: 2e-4 for transformers, 5e-4 for mixers, 5e-5 for a pretrained-size (>= 2048) Llama decoder."""
    decoder = getattr(config, "decoder_config", None) or config
    if decoder.model_type == MIXER_TYPE:
        return 5e-4
    return 5e-5 if decoder.hidden_size >= 2048 else 2e-4


def model_context(config) -> int:
    """The model's context (`max_position_embeddings`)."""
    context = getattr(config, "max_position_embeddings", None)
    if not context:
        raise ValueError(f"{config.model_type!r} config has no max_position_embeddings: pass --context.")
    return int(context)


def is_memory_model(config) -> bool:
    """Chunked memory models get a copy-accuracy evaluation."""
    return config.model_type in MEMORY_TYPES


# ---------------------------------------------------------------------------------------------- data
def _with_objective(dataset, objective: str):
    """Tag every row with the objective its eval batches are built with (see `RoutingCollator`)."""
    return dataset.map(lambda row: {"objective": objective})


def build_datasets(args, tokenizer, context: int, config):
    """Tokenised train rows and the eval sets: `clm` (or `autoencode`), plus, for memory models, the same
    full-length held-out rows as `copy` and `blank_copy` batches (copy accuracy on held-out documents without
    padding, as in the paper), so that every objective of the curriculum is watched whichever one trains."""
    mode = "pack" if args.pack else "truncate"
    train_text = load_corpus(args.dataset, "train", num_documents=args.train_documents, seed=args.seed)
    train = tokenize_corpus(train_text, tokenizer, context, mode=mode)
    check_corpus(train_text, train, args)
    test_text = load_corpus(args.dataset, "test", num_documents=args.eval_documents, seed=args.seed)
    test = tokenize_corpus(test_text, tokenizer, context, mode=mode)
    if hasattr(test, "select") and len(test) > args.eval_documents:  # packed long documents make many rows
        test = test.select(range(args.eval_documents))
    primary = "autoencode" if args.objective == "autoencode" else "clm"
    eval_sets = {primary: _with_objective(test, primary)}
    if is_memory_model(config):
        if context % 2:
            raise ValueError(f"copy evaluation needs an even --context, got {context}.")
        full = filter_full_length(test)
        if hasattr(full, "__len__") and len(full) == 0:
            print(f"warning: no full-length held-out rows at context {context}: no copy evaluation", file=sys.stderr)
        else:
            eval_sets.update({name: _with_objective(full, name) for name in ("copy", "blank_copy")})
    return train, eval_sets


def check_corpus(text, rows, args) -> None:
    """Stop before training if the training corpus gives no targets (`training.data.corpora.check_training_targets`);
    whitespace-only documents count as empty."""
    if not isinstance(text, datasets.Dataset):
        return  # streaming: counting would consume the stream
    documents, blank = len(text), count_blank_documents(text)
    source = f"{args.dataset} (train split)"
    if blank == documents:
        raise ValueError(f"the corpus {source!r} gives no training targets: all {documents} documents are empty "
                         "or whitespace-only.")
    check_training_targets(rows, source, documents, min_tokens=1 if args.objective == "autoencode" else 2)


def build_collator(model, objective: str, eval_objectives, context: int):
    """One `ObjectiveCollator` per objective used (training and evaluation), routed per batch."""
    names = {objective, *eval_objectives}
    collators = {name: ObjectiveCollator.from_config(name, model.config, max_length=context) for name in names}
    return RoutingCollator(collators, objective, keep=forward_arguments(model))


def metric_functions(config, eval_objectives) -> dict:
    """Per eval set: a streaming token-accuracy `compute_metrics` and the argmax `preprocess_logits_for_metrics`."""
    boundaries = config.chunk_size if getattr(config, "paper_chunk_targets", False) else None
    return {name: (StreamingAccuracy(shift=name != "autoencode", exclude_chunk_boundaries=boundaries),
                   preprocess_logits_for_metrics) for name in eval_objectives}


# ---------------------------------------------------------------------------------------------- trainer
def _distributed_cpu() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def training_arguments(args, extras: Sequence[str], config):
    """`TrainingArguments` from our options (the paper's appendix S1 defaults), then the pass-through `--key value` extras."""
    eval_steps = args.eval_steps or max(1, args.max_steps // 5)
    defaults = {
        "output_dir": args.output_dir, "max_steps": args.max_steps, "seed": args.seed, "data_seed": args.seed,
        "per_device_train_batch_size": args.batch_size, "per_device_eval_batch_size": args.batch_size,
        "learning_rate": args.learning_rate or default_learning_rate(config), "weight_decay": 0.0,
        "warmup_steps": min(500, args.max_steps // 10), "lr_scheduler_type": "linear", "max_grad_norm": 1.0,
        "eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps",
        "save_steps": args.save_steps or eval_steps, "logging_steps": max(1, min(eval_steps, args.max_steps // 50)),
        "remove_unused_columns": False, "batch_eval_metrics": True, "report_to": "none",
        "disable_tqdm": not sys.stderr.isatty(), "ddp_find_unused_parameters": False, "bf16": args.bf16,
        "use_cpu": not torch.cuda.is_available(), "dataloader_num_workers": 0,
    }
    if _distributed_cpu():
        defaults["ddp_backend"] = "gloo"
    argv = [item for key, value in defaults.items() for item in (f"--{key}", str(value))]
    parser = HfArgumentParser(TrainingArguments)
    parser.error = _option_error  # one line naming the option, not argparse's usage of every TrainingArguments field
    (training_args,) = parser.parse_args_into_dataclasses(args=argv + list(extras))
    if training_args.push_to_hub:  # publish final/ through our export (lint, model card) instead of the Trainer
        if not (args.push_to_hub or training_args.hub_model_id):
            raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME (or use --push-to-hub ORG/NAME).")
        args.push_to_hub = args.push_to_hub or training_args.hub_model_id
        training_args.push_to_hub = False
    if training_args.fsdp and not torch.cuda.is_available():
        raise ValueError(f"--fsdp {training_args.fsdp!r} on CPU: accelerate ignores FSDP there and would train "
                         "replicated copies; shard on CPU with training.fsdp_cpu (torch fully_shard) or use GPUs")
    return training_args


def _option_error(message: str):
    raise ValueError(f"{message} (a TrainingArguments option)")


def build_trainer(args, extras, tokenizer, model, callbacks=()):
    """The `MemoryTrainer` of a run (datasets, collator, metrics, arguments)."""
    context = args.context or model_context(model.config)
    if context > model_context(model.config):
        raise ValueError(f"--context {context} exceeds the model's context {model_context(model.config)}.")
    training_args = training_arguments(args, extras, model.config)  # a bad option stops before the data work
    train, eval_sets = build_datasets(args, tokenizer, context, model.config)
    functions = metric_functions(model.config, eval_sets)
    compute_metrics, preprocess = next(iter(functions.values()))  # swapped per eval set by MemoryTrainer
    return MemoryTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_sets,
        data_collator=build_collator(model, args.objective, eval_sets, context),
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


def summarise(args, trainer, final_metrics: dict, seconds: float, resumed_from) -> dict:
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
            "preset": args.preset, "init_from": args.init_from, "encoder_from": args.encoder_from,
            "objective": args.objective, "dataset": args.dataset, "model_type": model.config.model_type,
            "model_class": type(model).__name__, "no_memory": getattr(model.config, "no_memory", None),
            "freeze_encoder": getattr(model.config, "freeze_encoder", None),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "context": args.context or model_context(model.config), "vocab_size": model.config.vocab_size,
            "learning_rate": targs.learning_rate, "per_device_batch_size": targs.per_device_train_batch_size,
            "world_size": targs.world_size, "gradient_accumulation_steps": targs.gradient_accumulation_steps,
            "max_steps": targs.max_steps, "seed": targs.seed, "bf16": targs.bf16,
        },
        "train_loss_history": history,
        # combined objective: loss = clm_loss_weight * loss_clm + copy_loss_weight * loss_copy (per-stream token means)
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


def run(args: argparse.Namespace, extras: Sequence[str] = (), callbacks=(), model=None) -> dict:
    """Train per `args` and return the `metrics.json` summary (also written to the output folder).

    `model` (optional) replaces the one `args` describe (`--preset` / `--init-from`), e.g. a custom config.
    The main process holds the lock of `--output-dir` throughout (`conversion.safe_io.locked`): a second writer
    is refused naming this process. An interrupt raises `KeyboardInterrupt("interrupted at step N: ...")`.
    """
    inputs = run_inputs(args)
    safe_io.check_target(args.output_dir, kind="run", overwrite=True, option="--output-dir", inputs=inputs)
    lock = safe_io.locked(args.output_dir) if is_main_process() else contextlib.nullcontext()
    with lock:
        return _run(args, extras, callbacks, model, inputs)


def _run(args, extras, callbacks, model, inputs) -> dict:
    overwrite = getattr(args, "overwrite", False)
    tokenizer_path = args.tokenizer
    if tokenizer_path is None and args.init_from and (Path(args.init_from) / "tokenizer.json").is_file():
        tokenizer_path = args.init_from  # a later curriculum stage keeps the tokenizer its checkpoint was trained with
    tokenizer = load_tokenizer(tokenizer_path, args.trust_remote_code)
    if model is None:
        model = build_model(args, tokenizer)
    else:
        check_objective(model, args.objective)
    identity = run_identity(args, model.config, tokenizer)
    prepare_run_folder(args.output_dir, identity, resume=args.resume, overwrite=overwrite, write=False, inputs=inputs)
    if getattr(args, "lora_r", None):
        model = apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
    trainer = build_trainer(args, extras, tokenizer, model, callbacks)
    if trainer.is_world_process_zero():  # records the run (and fails here if the folder is not writable)
        prepare_run_folder(args.output_dir, identity, resume=args.resume, overwrite=overwrite, inputs=inputs)
    trainer.accelerator.wait_for_everyone()
    resume = last_complete_checkpoint(args.output_dir) if args.resume else None
    if args.resume and resume is None and trainer.is_world_process_zero():
        print(f"--resume: no complete checkpoint in {args.output_dir}; starting from step 0", file=sys.stderr)
    if resume is not None and trainer.is_world_process_zero():
        print(f"--resume: resuming from {resume}")
    start = time.perf_counter()
    try:
        if resume is not None and checkpoint_step(resume) >= trainer.args.max_steps:
            trainer.restore_finished_run(resume)  # nothing left to train: no extra step
        else:
            trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt as error:
        raise KeyboardInterrupt(interrupted_message(trainer.state.global_step, args.output_dir)) from error
    seconds = time.perf_counter() - start
    final_metrics = last_evaluation(trainer) or trainer.evaluate()
    summary = summarise(args, trainer, final_metrics, seconds, resume)
    write_outputs(args.output_dir, trainer, tokenizer, summary, overwrite=overwrite,
                  push_to_hub=getattr(args, "push_to_hub", None))
    if trainer.is_world_process_zero():
        print(f"\nfinished {trainer.state.global_step} steps in {seconds:.1f} s; final evaluation:")
        print(format_metrics(final_metrics))
        print(f"outputs: {args.output_dir}/final (Hub-ready), metrics.json, loss_curve.png")
    return summary


def interrupted_message(step: int, output_dir) -> str:
    """What an interrupted run says: the step, and where `--resume` continues from."""
    checkpoint = last_complete_checkpoint(output_dir)
    where = f"continues from {Path(checkpoint).name}" if checkpoint else "no checkpoint yet: starts over"
    return f"interrupted at step {step}: rerun with --resume ({where})"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (`memory-models train`, `python -m memory_models.training.train`,
    `torchrun -m memory_models.training.train`)."""
    args, extras = parse_args(argv)
    run(args, extras)
    return 0


if __name__ == "__main__":
    sys.exit(main())
