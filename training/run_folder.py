"""A run folder belongs to one run: its identity is recorded when the folder is first used, and checked on reuse.

`run.json` (written before training starts) records what makes two runs "the same run", read from the run's
`training.job.TrainJob`: preset or `--init-from` folder, a hash of the model config, seed, objective, dataset,
tokenizer and the data options, and the SHA-256 of the corpus's content and of the tokenizer, so that the same paths
holding another corpus or tokenizer are told apart.

* `--resume` refuses a folder whose recorded identity differs from this run's (naming the differences).
  Every checkpoint carries a copy of `run.json`, so a checkpoint copied into a new folder is checked too;
  checkpoints without any recorded identity (older versions) are resumed with a warning.
* A new run (no `--resume`) refuses a folder holding checkpoints or `final/` (of another run, or of an
  earlier start of this one) unless `--overwrite`, which removes those outputs of ours (complete
  `checkpoint-N/`, `final/`, `metrics.json`, `loss_curve.png`, `.staging/`) first: a forgotten `--resume`
  never silently retrains over a run's checkpoints, and no stale checkpoint is ever resumed later.
* A non-empty folder that memory-models did not create, or created as another kind (an export, a memory bank,
  ...), is refused unless `--overwrite` (nothing in it is removed then either; the folder becomes a run folder);
  `.`, its parents, the home folder, `/` and a folder that holds (or lies inside) one of the run's inputs
  (`--init-from`, `--encoder-from`, `--tokenizer`) are never run folders.
* The folder is made writable-checked here, before any training step: writing `run.json` fails first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from memory_models.conversion.safe_io import check_target, folder_kind, is_ours, mark, recover_all, write_text_atomic
from memory_models.training.data.corpora import corpus_fingerprint
from memory_models.training.data.tokenizer import tokenizer_sha256

IDENTITY_FILE = "run.json"
OUR_FILES = ("metrics.json", "loss_curve.png")
# config.json entries that say where or with which version a config was saved, not what the model is
VOLATILE_KEYS = {"_name_or_path", "transformers_version", "architectures", "auto_map", "dtype", "torch_dtype",
                 "_attn_implementation_autoset"}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


def config_hash(config) -> str:
    """A short sha256 of the model config (without paths, versions and dtype)."""
    text = json.dumps(_stable(config.to_dict()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_identity(job, config, tokenizer) -> dict:
    """What makes two runs the same run (see the module doc): fields of the `training.job.TrainJob`, the hash of
    the model config it built, the tokenizer's size and the content hashes of the corpus and the tokenizer."""
    corpus = corpus_fingerprint(job.dataset)
    return {
        "preset": job.preset, "init_from": job.init_from, "encoder_from": job.encoder_from,
        "config_hash": config_hash(config), "seed": job.seed, "objective": job.objective,
        "dataset": job.dataset, "text_column": job.text_column, "tokenizer": job.tokenizer or "default",
        "tokenizer_size": len(tokenizer),
        "context": job.context, "pack": job.pack, "train_documents": job.train_documents,
        "batch_size": job.batch_size, "corpus_sha256": corpus and corpus[:16],
        "tokenizer_sha256": tokenizer_sha256(tokenizer)[:16],
    }


def identity_differences(recorded: dict, current: dict) -> list[str]:
    """`key: recorded -> this run` for every entry that differs."""
    keys = sorted(set(recorded) | set(current))
    return [f"{k}: {recorded.get(k)!r} (recorded) != {current.get(k)!r} (this run)" for k in keys
            if recorded.get(k) != current.get(k)]


def _read_identity(folder: Path) -> dict | None:
    """The identity recorded in `folder/run.json` (a run folder, or a checkpoint: each carries a copy)."""
    path = Path(folder) / IDENTITY_FILE
    return json.loads(path.read_text()).get("identity") if path.is_file() else None


def complete_checkpoints(folder: Path) -> list[Path]:
    from memory_models.training.trainer import CHECKPOINT_PATTERN, COMPLETE_MARKER

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_PATTERN.match(p.name) and (p / COMPLETE_MARKER).is_file())


def _outputs(folder: Path) -> list[Path]:
    """This package's outputs in a run folder: complete checkpoints and (if ours) `final/`."""
    final = folder / "final"
    return complete_checkpoints(folder) + ([final] if is_ours(final) else [])


def _remove_our_outputs(folder: Path) -> None:
    for path in _outputs(folder) + [folder / ".staging"]:
        if path.is_dir():
            shutil.rmtree(path)
    for name in OUR_FILES:
        (folder / name).unlink(missing_ok=True)


def run_inputs(job) -> list[tuple[str, str | None]]:
    """The `(option, path)` inputs of a run that its folder must not hold (`conversion.safe_io.check_inputs`)."""
    return [("--init-from", job.init_from), ("--encoder-from", job.encoder_from), ("--tokenizer", job.tokenizer)]


def prepare_run_folder(output_dir, identity: dict, *, resume: bool, overwrite: bool, write: bool = True,
                       inputs=()) -> None:
    """Check `output_dir` against this run (see the module doc) and record `identity` in it.

    `write=False` (processes other than the main one) only checks. Raises `ValueError` naming the folder and
    the reason; `PermissionError`/`OSError` of a folder that cannot be written become a `ValueError` too.
    """
    from memory_models.training.trainer import last_complete_checkpoint

    folder = Path(output_dir)
    outputs = _outputs(folder)
    # a folder holding only checkpoints of ours (e.g. one copied there to resume from) is ours too
    only_checkpoints = folder.is_dir() and all(p in outputs or p.name == ".staging" for p in folder.iterdir())
    check_target(folder, kind="run", overwrite=overwrite or only_checkpoints, option="--output-dir", inputs=inputs)
    check_target(folder / "final", kind="export", overwrite=overwrite, option="--output-dir's final/")
    if write and is_ours(folder):
        recover_all(folder)  # final/ or a checkpoint whose replacement was killed between its two renames
        outputs = _outputs(folder)
    recorded_file = folder / IDENTITY_FILE
    recorded = _read_identity(folder) if folder_kind(folder) == "run" else None
    newest = last_complete_checkpoint(folder) if resume else None
    if recorded is None and newest is not None:
        recorded = _read_identity(Path(newest))
    stale = False
    if recorded is not None:
        differences = identity_differences(recorded, identity)
        if differences and resume:
            raise ValueError(f"--resume: {folder} holds another run's checkpoints; differences: "
                             + "; ".join(differences) + ". Use a new --output-dir, or drop --resume and pass "
                             "--overwrite to replace that run.")
        if outputs and not differences and not resume and not overwrite:
            raise ValueError(f"--output-dir {folder} holds checkpoints of this run from an earlier start; pass "
                             "--resume to continue it, or --overwrite to start it over.")
        stale = bool(outputs and (differences or not resume))
    elif outputs:
        if resume:
            print(f"warning: --resume: the checkpoints in {folder} record no run identity (written by an older "
                  "version?); resuming without checking that they belong to this run", file=sys.stderr)
        stale = not resume
    if stale and not overwrite:
        names = ", ".join(p.name for p in outputs[:5]) + (" ..." if len(outputs) > 5 else "")
        raise ValueError(f"--output-dir {folder} holds another run's outputs ({names}); use a new --output-dir, "
                         "--resume for the same run, or --overwrite to replace them.")
    if not write:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if stale:
            _remove_our_outputs(folder)
        if (folder / ".staging").is_dir():
            shutil.rmtree(folder / ".staging")  # saves of a killed run: never picked up, removed here
        if folder_kind(folder) != "run":
            mark(folder, "run")
        write_text_atomic(recorded_file, json.dumps({"identity": identity}, indent=2) + "\n")
    except OSError as error:
        raise ValueError(f"--output-dir {folder} is not writable: {error}") from error
