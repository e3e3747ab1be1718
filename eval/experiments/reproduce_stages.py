"""Building blocks of `memory-models reproduce`: the two scales, and training stages that run once.

A stage is one `memory-models train` run (the same code path: a `TrainJob` given to `train.run`) of a model
described by a [`ModelSpec`]. Its
result is kept as a Hub folder with its tokenizer, `DIR/models/<name>-seed<k>/`, and its training record
(`metrics.json`, `loss_curve.png`, `stage.json`) under `DIR/runs/<name>-seed<k>/`. A stage whose folder exists
and whose recorded settings equal the requested ones is reused, so `reproduce all` trains every model once; the
settings of a stage that starts from another model (its encoder, or its weights) include that model's files' SHA-256,
so a stage trained again (a new budget, say) trains again every stage built on it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import set_seed

from memory_models.configuration import build_model, get_preset
from memory_models.conversion.safe_io import is_ours, replace_folder
from memory_models.eval.banks.store import files_sha256
from memory_models.modeling_memory import MemoryConfig
from memory_models.training import train
from memory_models.training.data.corpora import records_documents
from memory_models.training.data.tokenizer import corpus_texts, save_tokenizer, special_token_ids, train_tokenizer
from memory_models.training.job import TrainJob

STAGE_FILE = "stage.json"


@dataclass(frozen=True)
class Scale:
    """Sizes, steps and data of one `--scale` (presets name the models; `small` is sized for 2 CPU cores)."""

    name: str
    dataset: str  # python-docs (embedded) or fineweb-edu (the paper's)
    vocab_size: int  # a byte-level BPE of this size is trained on the corpus's train split
    batch_size: int
    learning_rate: float  # transformers
    mixer_learning_rate: float
    autoencoder_steps: int  # autoencoders and causal LMs (Table 1)
    probe_steps: int  # each retention probe's fresh decoder
    memory_steps: int  # each memory-model stage (Fig. 4(d), Table 3)
    contexts: tuple[int, ...]  # Table 1 retention contexts; the first is the memory models' chunk size
    eval_documents: int
    records_steps: int  # each Table 4 stage
    records_vocab_size: int
    records_documents: int
    extraction_documents: int  # records_extraction / records_perplexity documents, and distance questions
    presets: dict = field(default_factory=dict)  # role -> preset name
    memory_families: tuple = ("memory-mixer", "memory-transformer")  # Fig. 4(d)'s memory models
    records_family: str = "memory-transformer"  # Table 4's memory model
    table3_family: str = "memory-transformer"  # Table 3's memory model
    warmup_steps: int = 100
    train_documents: int | None = None  # training documents of the corpus (None: all)
    transformer_learning_rate: float | None = None  # every transformer that trains (None: learning_rate)
    transformer_warmup_steps: int | None = None  # and its warmup (None: warmup_steps; at most a tenth of a run)
    # Table 1's transformer autoencoders and causal LM (None: autoencoder_steps); Fig. 4(d) and Table 3 freeze the
    # chunk-sized autoencoder's encoder
    transformer_encoder_steps: int | None = None
    # Fig. 4(d)'s memory-transformer stages (None: memory_steps): an attention decoder reads a frozen encoder's
    # memories more slowly than a mixer decoder and needs its own budget.
    transformer_read_steps: int | None = None
    # Table 4's transformer autoencoder on `records` (None: records_steps, and the transformer learning rate)
    records_transformer_autoencoder_steps: int | None = None
    records_transformer_autoencoder_learning_rate: float | None = None
    # Table 4's combined + retrieval stage (None: records_steps): half its rows are questions, and the answers are
    # still being learned at records_steps
    records_retrieval_steps: int | None = None
    # and, for a memory transformer, the weight of its retrieval loss stream against the causal and copy streams
    # (None: the config's, 1.0)
    records_transformer_retrieval_loss_weight: float | None = None

    def budget(self, arch: str) -> dict:
        """Learning rate and warmup of a model of `arch` ("mixer" or "transformer") that trains (the probes use
        `learning_rate`)."""
        if arch == "mixer":
            return {"learning_rate": self.mixer_learning_rate, "warmup_steps": self.warmup_steps}
        return {"learning_rate": self.transformer_learning_rate or self.learning_rate,
                "warmup_steps": self.transformer_warmup_steps or self.warmup_steps}

    def encoder_steps(self, arch: str) -> int:
        """Steps of Table 1's autoencoders and causal LM of `arch` (the same for both: the paper's contrast)."""
        return self.transformer_encoder_steps if arch == "transformer" and self.transformer_encoder_steps \
            else self.autoencoder_steps

    def read_steps(self, arch: str, steps: int) -> int:
        """Steps of a stage in which a decoder learns to read a frozen encoder's memories (blank copy): `steps`, or
        `transformer_read_steps` for an attention decoder when the scale sets it."""
        return self.transformer_read_steps if arch == "transformer" and self.transformer_read_steps else steps


SMALL_PRESETS = {
    "mixer-autoencoder": "mixer-autoencoder-small", "transformer-autoencoder": "transformer-autoencoder-small",
    "mixer-clm": "mixer-clm-small", "transformer-clm": "transformer-clm-small",
    "memory-mixer": "memory-mixer-small", "memory-transformer": "memory-transformer-small",
}
TINY_PRESETS = {
    "mixer-autoencoder": "mixer-autoencoder-tiny", "transformer-autoencoder": "autoencoder-tiny",
    "mixer-clm": "masked-mixer-tiny", "transformer-clm": "transformer-clm-tiny",
    "memory-mixer": "memory-mixer-tiny", "memory-transformer": "memory-transformer-tiny",
}
PAPER_PRESETS = {
    "mixer-autoencoder": "mixer-autoencoder-table1", "transformer-autoencoder": "transformer-autoencoder-table1",
    "mixer-clm": "mixer-clm-table1", "transformer-clm": "transformer-clm-table1",
    "memory-mixer": "memory-mixer-copy", "memory-transformer": "memory-transformer-table3",
}
SCALES = {
    # Learning rates from sweeps at this size (docs/reproduce.md, "Why blank copy was slow"): mixers learn fastest at 6e-3
    # (the autoencoder reaches 97.5% at 2,000 steps, 72% at 1e-3), transformers at 2e-3 (3e-3 stalls); the retention
    # probes train at 1e-3.
    # Fig. 4(d), Table 3 and Table 4 run the paper's memory transformer (Llama encoder and decoder), as at every scale
    # (tiny and paper add the mixer to Fig. 4(d)); `--family memory-mixer` runs the masked mixer instead (its rows in
    # docs/reproduce.md). An attention decoder reads memories more slowly than the mixer's, so the transformer gets
    # its own read budgets below, and its training step costs 2-3x a mixer's on a CPU.
    "small": Scale("small", "python-docs", 2048, batch_size=32, learning_rate=1e-3, mixer_learning_rate=6e-3,
                   autoencoder_steps=2000, probe_steps=600, memory_steps=1500, contexts=(16, 32, 64),
                   eval_documents=100, records_steps=1500, records_vocab_size=512, records_documents=2000,
                   extraction_documents=200, presets=SMALL_PRESETS, memory_families=("memory-transformer",),
                   # transformers at 2e-3 warmed up over a tenth of the run: the autoencoder reconstructs 94.1% after
                   # 2,000 steps (72.4% at 1e-3; 57.2% with 100 warmup steps), 72.8-94.0% over 3 seeds, and
                   # 98.4-99.25% after 3,000; the Llama decoder reads a frozen autoencoder's memories back to its
                   # own reconstruction in 3,000 steps (96.5% over 3 seeds; docs/reproduce.md, "Why blank copy was
                   # slow", item 6)
                   transformer_learning_rate=2e-3, transformer_warmup_steps=500, transformer_read_steps=3000,
                   transformer_encoder_steps=3000,
                   # on records the transformer autoencoder learns the values late, and faster at 1e-3: 89.0% / 87.2%
                   # held out after 2,000 steps (seeds 0 / 1) against 74.0% / 77.1% at 2e-3 (71.0% after 1,500)
                   records_transformer_autoencoder_steps=3000, records_transformer_autoencoder_learning_rate=1e-3,
                   # the memory transformer answers 52-69% of held-out answer tokens after 1,500 steps of combined +
                   # retrieval, 76 / 88 / 79% after 3,000 (seeds 0 / 1 / 2; docs/reproduce.md, Table 4); the mixer
                   # with the same budget: 71 / 68 / 53%, and extraction 76-79% at every distance (3-seed means)
                   records_retrieval_steps=3000,
                   # the memory transformer's retrieval stream weighs half its causal and copy streams: general bits
                   # per byte +6.1% of the causal control's against +8.1% at 1.0 (3 seeds, lower in each), extraction
                   # 96.6 / 97.0 / 89.5% against 96.7 / 96.2 / 90.5% (docs/reproduce.md, Table 4)
                   records_transformer_retrieval_loss_weight=0.5),
    # A smoke test of the pipeline (a minute on 2 CPU cores): the tiny test presets, a few steps; numbers mean nothing.
    "tiny": Scale("tiny", "python-docs", 300, batch_size=4, learning_rate=1e-3, mixer_learning_rate=1e-3,
                  autoencoder_steps=2, probe_steps=2, memory_steps=2, contexts=(8, 16), eval_documents=4,
                  records_steps=2, records_vocab_size=300, records_documents=16, extraction_documents=4,
                  presets=TINY_PRESETS, warmup_steps=1, train_documents=24),
    # The paper's sizes and budgets (Tables 1, 3 and 4 of the paper): a GPU job.
    "paper": Scale("paper", "fineweb-edu", 8000, batch_size=64, learning_rate=2e-4, mixer_learning_rate=5e-4,
                   autoencoder_steps=200_000,
                   probe_steps=200_000, memory_steps=100_000, contexts=(256, 512), eval_documents=5000,
                   records_steps=100_000, records_vocab_size=8000, records_documents=200_000,
                   extraction_documents=1000, presets=PAPER_PRESETS, warmup_steps=500),
}


@dataclass(frozen=True)
class ModelSpec:
    """How a stage's model is built: a preset (with config overrides), optionally another model's encoder (copied
    and frozen), or the weights of an earlier stage (`init_from`, a Hub folder)."""

    preset: str | None = None
    preset_args: tuple = ()  # ((argument, value), ...) of the preset function, e.g. (("context", 32),)
    overrides: tuple = ()  # ((field, value), ...) of the preset's config (of an `init_from` model: loss weights only)
    encoder_from: str | None = None  # folder of an autoencoder or causal LM whose encoder (base model) is copied
    init_from: str | None = None


@dataclass(frozen=True)
class Stage:
    """One training run: `name` (model name without the seed), its model, objective and budget."""

    name: str
    model: ModelSpec
    objective: str
    context: int
    steps: int
    learning_rate: float
    batch_size: int
    dataset: str
    tokenizer: str  # folder
    eval_documents: int
    warmup_steps: int
    train_documents: int | None = None


class Context:
    """What every stage of one worker shares: the output folder, the device, and where progress goes."""

    def __init__(self, output_dir: Path, device: str, report):
        self.output_dir, self.device, self.report = Path(output_dir), device, report

    def model_dir(self, name: str, seed: int) -> Path:
        return self.output_dir / "models" / f"{name}-seed{seed}"

    def run_dir(self, name: str, seed: int) -> Path:
        return self.output_dir / "runs" / f"{name}-seed{seed}"


# ---------------------------------------------------------------------------------------------- tokenizers
def corpus_tokenizer(output_dir: Path, dataset: str, vocab_size: int, documents: int | None = None) -> Path:
    """A byte-level BPE trained on `dataset`'s train split (reused when its folder is complete)."""
    folder = Path(output_dir) / f"tokenizer-{dataset}-{vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        if dataset == "records":
            texts = records_documents(documents or 2000, 0, "train")
        else:
            texts = corpus_texts(dataset, "text", documents)
        save_tokenizer(train_tokenizer(texts, vocab_size), folder)
    return folder


# ---------------------------------------------------------------------------------------------- models
def build_stage_model(spec: ModelSpec, tokenizer, seed: int):
    """The model of `spec`, built after `set_seed(seed)`, with the tokenizer's vocabulary and special ids."""
    set_seed(seed)
    if spec.init_from is not None:
        model = train.load_pretrained(spec.init_from)
        for field, value in spec.overrides:  # how the next stage weighs its loss streams; the weights stay as they are
            if not field.endswith("_loss_weight"):
                raise ValueError(f"a stage that starts from {spec.init_from} can change its loss weights only, got "
                                 f"{field}={value!r}")
            setattr(model.config, field, value)
        return model
    ids = special_token_ids(tokenizer)
    overrides = dict(spec.overrides)
    special = {k: v for k, v in ids.items() if k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    config = get_preset(spec.preset, vocab_size=len(tokenizer), **dict(spec.preset_args), **special)
    if isinstance(config, MemoryConfig):
        overrides = {**{k: ids[k] for k in ("blank_token_id", "copy_delimiter_token_id")}, **overrides}
    if spec.encoder_from is not None:
        overrides["freeze_encoder"] = True
    if overrides:
        config = type(config).from_dict({**config.to_dict(), **overrides})
    if spec.encoder_from is None:
        return build_model(config)
    model = build_model(train.with_encoder_of(config, spec.encoder_from))  # memories of exactly this encoder
    train.copy_encoder(model, spec.encoder_from)
    return model


def stage_job(stage: Stage, seed: int, run_dir: Path, device: str) -> TrainJob:
    """The training job of `stage` for `seed` (its model is `build_stage_model`'s; the preset names it in the run's
    records): packed rows, ten evaluations, no checkpoints (the result is kept as `final/`), started over each time."""
    options = {"save_strategy": "no", "warmup_steps": min(stage.warmup_steps, stage.steps // 10),
               "logging_steps": max(1, stage.steps // 20), "disable_tqdm": True}
    if device == "cpu":
        options["use_cpu"] = True
    return TrainJob(output_dir=str(run_dir), preset=stage.model.preset or "memory-transformer-tiny",
                    objective=stage.objective, dataset=stage.dataset, pack=True, tokenizer=stage.tokenizer,
                    context=stage.context, max_steps=stage.steps, batch_size=stage.batch_size, seed=seed,
                    learning_rate=stage.learning_rate, eval_steps=max(1, stage.steps // 10),
                    eval_documents=stage.eval_documents, overwrite=True, train_documents=stage.train_documents or None,
                    trainer_options=options)


def run_stage(context: Context, stage: Stage, seed: int) -> dict:
    """Train `stage` for `seed` (or reuse it) and return its `metrics.json` summary; the model ends up in
    `DIR/models/<name>-seed<seed>/`."""
    model_dir, run_dir = context.model_dir(stage.name, seed), context.run_dir(stage.name, seed)
    record = {"stage": asdict(stage), "seed": seed}
    inputs = {folder: files_sha256(Path(folder)) for folder in (stage.model.encoder_from, stage.model.init_from)
              if folder is not None and Path(folder).is_dir()}
    if inputs:  # the models it starts from, as they are now
        record["inputs"] = inputs
    metrics_file, stage_file = run_dir / "metrics.json", run_dir / STAGE_FILE
    if (model_dir / "config.json").is_file() and metrics_file.is_file() and stage_file.is_file():
        if json.loads(stage_file.read_text()) == json.loads(json.dumps(record)):
            context.report(f"reusing {model_dir}")
            return json.loads(metrics_file.read_text())
    context.report(f"training {stage.name} (seed {seed}): {stage.objective}, {stage.steps} steps")
    tokenizer = train.load_tokenizer(stage.tokenizer)
    model = build_stage_model(stage.model, tokenizer, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    job = stage_job(stage, seed, run_dir, context.device)
    with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        summary = train.run(job, model=model)
    if model_dir.exists() and not is_ours(model_dir):
        raise ValueError(f"{model_dir} exists and was not written by memory-models: refusing to replace it")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    replace_folder(run_dir / "final", model_dir)
    stage_file.write_text(json.dumps(record, indent=2))
    context.report(f"trained {stage.name} (seed {seed}) in {summary['train_seconds']:.0f} s -> {model_dir}")
    return summary


def stage_for(scale: Scale, name: str, model: ModelSpec, objective: str, context: int, tokenizer: Path, **changes):
    """A stage of `scale` with its default budget (memory-model steps unless `steps` is given)."""
    stage = Stage(name, model, objective, context, scale.memory_steps, scale.learning_rate, scale.batch_size,
                  scale.dataset, str(tokenizer), scale.eval_documents, scale.warmup_steps, scale.train_documents)
    return replace(stage, **changes)


def history(summary: dict, key: str) -> list:
    """`[(step, value), ...]` of an eval metric of a training summary (`eval_blank_copy_accuracy`, ...)."""
    return [tuple(point) for point in summary.get("eval_history", {}).get(key, [])]


def available_cpus() -> int:
    """The cores this process may run on (`taskset`, a container's CPU set), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Intra-op threads of this worker (one per worker when seeds train side by side on a CPU)."""
    torch.set_num_threads(max(1, threads))
