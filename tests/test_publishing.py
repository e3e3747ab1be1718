"""Publishing: model cards the Hub parses, pushes that create the repo first and upload only the export,
logging integrations through the TrainingArguments pass-through, and folders other users can read."""

import fnmatch
import json
import os
import pathlib
import stat
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard

from memory_models.conversion import export_to_hub, isolation
from memory_models.conversion.export_to_hub import export_model, push_folder
from memory_models.conversion.safe_io import MARKER
from model_tester import all_cases
from memory_models.training import train
from memory_models.training.job import TrainJob
from memory_models.eval.cli import main as cli_main

TINY = ["--train-documents", "64", "--eval-documents", "8", "--batch-size", "2", "--seed", "0"]


class FakeHfApi:
    """Stands in for `huggingface_hub.HfApi` at the network boundary: records each call and, for an upload,
    the files under `folder_path` at that moment."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
        self.calls.append({"call": "create_repo", "repo_id": repo_id, "repo_type": repo_type, "exist_ok": exist_ok,
                           **kwargs})

    def upload_folder(self, *, folder_path, repo_id, repo_type=None, commit_message=None, **kwargs):
        root, ignored = pathlib.Path(folder_path), kwargs.get("ignore_patterns") or []
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.is_file() and not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignored))
        self.calls.append({"call": "upload_folder", "folder_path": str(folder_path), "repo_id": repo_id,
                           "repo_type": repo_type, "commit_message": commit_message, "files": files, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setattr(export_to_hub, "HfApi", FakeHfApi)
    FakeHfApi.calls = []
    return FakeHfApi.calls


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder: pathlib.Path) -> dict:
    """Permission bits of `folder` and of everything under it."""
    return {str(p.relative_to(folder.parent)): stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}


def test_train_push_card_plot_and_tensorboard(tmp_path, fake_hub, umask_022):
    """`train --push-to-hub ORG/NAME --report_to tensorboard`: the repo is created (exist_ok) before one upload of
    exactly final/; final/README.md round-trips through ModelCard.load with the run's final metrics as model-index
    results; TensorBoard's own reader finds the streamed eval metrics; final/ is 0755 with 0644 files."""
    output = tmp_path / "run"
    assert cli_main(["train", "--preset", "memory-transformer-tiny", "--objective", "combined", "--max-steps", "4",
                     "--eval-steps", "2", "--output-dir", str(output), *TINY, "--push-to-hub", "org/tiny-memory",
                     "--report_to", "tensorboard"]) == 0
    final, metrics = output / "final", json.loads((output / "metrics.json").read_text())["final"]

    create, upload = fake_hub
    assert create == {"call": "create_repo", "repo_id": "org/tiny-memory", "repo_type": "model", "exist_ok": True}
    assert upload["call"] == "upload_folder" and upload["repo_id"] == "org/tiny-memory"
    assert pathlib.Path(upload["folder_path"]) == final
    assert upload["files"] == sorted(p.name for p in final.iterdir() if p.name != MARKER)  # not our own marker
    assert "README.md" in upload["files"] and "metrics.json" not in upload["files"]
    assert not {"path_in_repo", "allow_patterns", "delete_patterns"} & set(upload)  # the folder, nothing else
    assert "run" in upload["commit_message"] and "4 steps" in upload["commit_message"]

    card = ModelCard.load(final / "README.md")
    assert card.data.model_name == "org/tiny-memory" and card.data.library_name == "transformers"
    assert {"memory-models", "memory_model", "custom_code"} <= set(card.data.tags)
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["clm token accuracy"] == pytest.approx(metrics["eval_clm_accuracy"], abs=1e-6)
    assert results["copy token accuracy"] == pytest.approx(metrics["eval_copy_accuracy"], abs=1e-6)
    assert results["clm entropy ratio H_r = 1 - CE / ln V"] == pytest.approx(metrics["eval_clm_entropy_ratio"],
                                                                             abs=1e-6)
    assert 'AutoModelForCausalLM.from_pretrained("org/tiny-memory", trust_remote_code=True)' in card.text
    assert "| `objective` | combined |" in card.text and "arXiv:2602.13466" in card.text

    assert (output / "loss_curve.png").stat().st_size > 0 and (output / "loss_curve.svg").stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_file,) = (output / "runs").rglob("events.out.tfevents.*")  # the Trainer's default logging dir
    events = EventAccumulator(str(event_file.parent))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "eval/clm_accuracy", "eval/copy_accuracy", "eval/clm_entropy_ratio"} <= scalars, scalars
    assert events.Scalars("eval/clm_accuracy")[-1].value == pytest.approx(metrics["eval_clm_accuracy"], rel=1e-5)

    assert {path: mode for path, mode in modes(final).items()} == {
        path: 0o755 if (tmp_path / "run" / path).is_dir() else 0o644 for path in modes(final)}


def test_trainer_hub_options_go_through_our_export(tmp_path):
    """`--push_to_hub --hub_model_id ORG/NAME` (Trainer options) select our push of final/ and switch the
    Trainer's own checkpoint pushing off; `--push_to_hub` without a repo is a ValueError."""
    tokenizer = train.load_tokenizer(None)
    job = TrainJob.from_argv(["--output-dir", str(tmp_path), "--preset", "transformer-clm-tiny",
                              "--push_to_hub", "--hub_model_id", "org/from-trainer"])
    training_args = train.training_arguments(job, train.preset_config(job, tokenizer))
    assert training_args.push_to_hub is False and train.hub_repo(job) == "org/from-trainer"
    job = TrainJob.from_argv(["--output-dir", str(tmp_path), "--preset", "transformer-clm-tiny",
                              "--push_to_hub"])
    with pytest.raises(ValueError, match="--hub_model_id"):
        train.training_arguments(job, train.preset_config(job, tokenizer))


def test_converted_decoder_card_and_bad_push_arguments(tmp_path, fake_hub):
    """A card with base_model and license, the usage naming the folder; bad repo ids fail before any upload."""
    torch.manual_seed(0)
    model = all_cases()[0].build()
    folder = export_model(model, tmp_path / "export", base_model="meta-llama/Llama-3.2-1B", license="apache-2.0")
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "meta-llama/Llama-3.2-1B" and card.data.license == "apache-2.0"
    assert card.data.eval_results is None and f'from_pretrained("{tmp_path / "export"}"' in card.text
    with pytest.raises(ValueError, match="push=True needs repo_id"):
        export_model(model, tmp_path / "other", push=True)
    with pytest.raises(ValueError, match="'org/name', got 'no-org'"):
        push_folder(folder, "no-org")
    assert fake_hub == [] and sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_export_permissions_follow_the_umask(tmp_path, umask, folder_mode, file_mode):
    """An exported folder gets the modes of a plain mkdir / open under the user's umask, after the atomic rename."""
    old = os.umask(umask)
    try:
        folder = export_model(all_cases()[0].build(), tmp_path / "export")
    finally:
        os.umask(old)
    got = modes(folder)
    assert got == {path: folder_mode if (tmp_path / path).is_dir() else file_mode for path in got}


# Runs where our packages cannot be imported, with stdin closed; records every prompt transformers shows.
TOKENIZER_LOADER = """
    import builtins, json, sys
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    asked, real_input = [], builtins.input

    def recording_input(prompt=""):
        asked.append(prompt)
        return real_input(prompt)  # stdin is closed: EOFError, as in a script without a terminal

    builtins.input = recording_input
    text, result = sys.argv[1], {}
    for source in sys.argv[2:]:
        flagged = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
        plain = PreTrainedTokenizerFast.from_pretrained(source)
        quiet = len(asked)
        unflagged = AutoTokenizer.from_pretrained(source)
        result[source] = {"classes": [type(t).__name__ for t in (flagged, plain, unflagged)],
                          "ids": [t(text)["input_ids"] for t in (flagged, plain, unflagged)],
                          "prompts_with_flag_or_concrete_class": quiet, "prompts_without_flag": len(asked) - quiet}
        del asked[:]
    print()  # the prompt text ends without a newline
    print(json.dumps(result))
"""


def test_exported_tokenizer_loads_without_our_packages_or_prompts(tmp_path):
    """In a process without our packages and with stdin closed, the exported tokenizer loads from the folder and
    by repo id from an offline Hub cache: with `trust_remote_code=True` (as the card says) and as a plain
    `PreTrainedTokenizerFast` nothing is asked; without the flag it still loads instead of waiting on a prompt."""
    from test_hub_export import _fake_hub_cache
    from memory_models.training.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["record 7: colour = teal", "the memory model reads chunks"] * 20, vocab_size=300,
                                num_reserved_tokens=4)
    folder = export_model(all_cases()[0].build(), tmp_path / "export", tokenizer, repo_id="memory-models/tok")
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    _fake_hub_cache(folder, tmp_path / "hub", "memory-models/tok")
    text = "record 7: colour = teal <|reserved_0|> again"
    result = isolation.run_without_our_packages(
        TOKENIZER_LOADER, text, folder, "memory-models/tok", timeout=300,
        env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "home")})
    expected = tokenizer(text)["input_ids"]
    for source in (str(folder), "memory-models/tok"):
        assert result[source]["prompts_with_flag_or_concrete_class"] == 0, source
        assert result[source]["ids"] == [expected] * 3, source
        assert result[source]["classes"] == ["TokenizersBackend"] * 3, source
