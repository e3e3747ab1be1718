"""`TrainJob`: the command line, `demo`, `reproduce` and Python build the same training job; objectives reach
training through the registry; renamed options are refused with their new names."""

import json

import pytest
import torch

from memory_models.eval.cli import main as cli_main
from memory_models.eval.experiments import demo, reproduce_stages
from memory_models.eval.experiments.arguments import demo_parser
from memory_models.training import objectives, train
from memory_models.training.arguments import train_parser
from memory_models.training.data.corpora import tokenize_corpus
from memory_models.training.job import TrainJob
from memory_models.training.objectives import Objective, register_objective
from memory_models.training.objectives.causal import causal_batch

TINY = ["--preset", "transformer-clm-tiny", "--context", "16", "--train-documents", "16", "--eval-documents", "4",
        "--batch-size", "2", "--max-steps", "1", "--eval-steps", "1", "--logging_steps", "1"]


def tiny_job(output_dir, **changes) -> TrainJob:
    """The job of `TINY`, built in Python (`changes` replace its fields)."""
    fields = dict(output_dir=str(output_dir), preset="transformer-clm-tiny", context=16, train_documents=16,
                  eval_documents=4, batch_size=2, max_steps=1, eval_steps=1, trainer_options={"logging_steps": 1})
    return TrainJob(**{**fields, **changes})


def test_the_command_line_and_python_build_the_same_run(tmp_path):
    """`memory-models train ARGV` and `train.run(TrainJob(...))` with the same settings are one job: equal jobs,
    the same recorded run identity (what --resume compares) and the same first-step loss."""
    assert cli_main(["train", *TINY, "--output-dir", str(tmp_path / "cli")]) == 0
    job = tiny_job(tmp_path / "python")
    assert TrainJob.from_argv([*TINY, "--output-dir", str(tmp_path / "python")]) == job
    summary = train.run(job)
    from_cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    identities = [json.loads((tmp_path / name / "run.json").read_text())["identity"] for name in ("cli", "python")]
    assert identities[0] == identities[1] and identities[0]["preset"] == "transformer-clm-tiny"
    (step, loss), (cli_step, cli_loss) = summary["train_loss_history"][0], from_cli["train_loss_history"][0]
    assert step == cli_step == 1
    torch.testing.assert_close(torch.tensor(loss), torch.tensor(cli_loss), rtol=0, atol=0)


def test_demo_and_reproduce_build_the_jobs_of_the_command_lines_they_replaced(tmp_path):
    """The jobs `demo` and a `reproduce` stage build equal the jobs of the `memory-models train` options they used
    to spell out (pass-through Trainer options included), so their runs are the runs they were."""
    args = demo.with_recipe(demo_parser().parse_args(["--steps", "40", "--autoencoder-steps", "30", "--quick",
                                                      "--output-dir", str(tmp_path)]))
    common = ["--pack", "--tokenizer", str(tmp_path / "tok"), "--batch-size", "32", "--seed", "0", "--learning-rate",
              "2e-3", "--overwrite", "--train-documents", "64", "--eval-documents", "12"]
    old = ["--preset", "memory-transformer-tiny", "--output-dir", str(tmp_path / "memory"), "--objective",
           "copy_and_blank_copy", "--max-steps", "40", "--eval-steps", "8", "--save-steps", "40", "--warmup_steps", "4",
           "--logging_steps", "4", "--encoder-from", str(tmp_path / "ae"), "--freeze-encoder", *common]
    job = demo.train_job(args, tmp_path / "memory", tmp_path / "tok", encoder_from=str(tmp_path / "ae"),
                         freeze_encoder=True)
    assert job == TrainJob.from_argv(old)
    old = ["--preset", "memory-transformer-tiny", "--output-dir", str(tmp_path / "ae"), "--objective", "autoencode",
           "--context", "8", "--max-steps", "30", "--eval-steps", "6", "--save-steps", "30", "--warmup_steps", "3",
           "--logging_steps", "3", *common]
    assert demo.train_job(args, tmp_path / "ae", tmp_path / "tok", "autoencode") == TrainJob.from_argv(old)
    stage = reproduce_stages.stage_for(reproduce_stages.SCALES["tiny"], "ae", reproduce_stages.ModelSpec(
        "autoencoder-tiny", (("context", 8),)), "autoencode", 8, tmp_path / "tok", steps=30)
    old = ["--preset", "autoencoder-tiny", "--output-dir", str(tmp_path / "run"), "--objective", "autoencode",
           "--dataset", "python-docs", "--pack", "--tokenizer", str(tmp_path / "tok"), "--context", "8", "--max-steps",
           "30", "--batch-size", "4", "--seed", "1", "--learning-rate", "0.001", "--eval-steps", "3",
           "--eval-documents", "4", "--overwrite", "--save_strategy", "no", "--warmup_steps", "1", "--logging_steps",
           "1", "--disable_tqdm", "True", "--train-documents", "24", "--use_cpu", "True"]
    assert reproduce_stages.stage_job(stage, 1, tmp_path / "run", "cpu") == TrainJob.from_argv(old)


def test_trainer_options_are_typed_and_checked(tmp_path):
    """Pass-through options arrive typed (only those given); a key that is no TrainingArguments field, or an
    unknown command-line option, is a ValueError naming it."""
    job = TrainJob.from_argv([*TINY, "--output-dir", str(tmp_path), "--report_to", "tensorboard", "--bf16"])
    assert job.trainer_options == {"logging_steps": 1, "report_to": "tensorboard"} and job.bf16 is True
    with pytest.raises(ValueError, match=r"trainer_options \['warmup_step'\] are not"):
        tiny_job(tmp_path, trainer_options={"warmup_step": 3})
    with pytest.raises(ValueError, match="Pass --preset NAME or --init-from DIR, not both"):
        tiny_job(tmp_path, init_from=str(tmp_path))


def first_half_rows(texts, tokenizer, config, *, context, pack, seed):
    """A toy objective's rows: the documents cut into rows, with their own targets on each row's first half only."""
    rows = tokenize_corpus(texts, tokenizer, context, mode="pack" if pack else "truncate")

    def targets(row):
        kept = [i < context // 2 and bool(real) for i, real in enumerate(row["attention_mask"])]
        return {"labels": [token if keep else -100 for token, keep in zip(row["input_ids"], kept)]}

    return rows.map(targets)


def first_half_batch(input_ids, attention_mask=None, *, labels=None, settings, pad_token_id=None) -> dict:
    """The toy's batches: causal, with the rows' own targets (recording that it got them)."""
    first_half_batch.labelled.append(labels is not None)
    return causal_batch(input_ids, attention_mask, pad_token_id, labels=labels)


def test_a_registered_objective_trains_through_train_run(tmp_path, monkeypatch):
    """A new objective is one record and one registration: the command line offers it; `train.run` trains on its
    own rows and their own targets and evaluates it (`eval_first_half_*`) beside the watched `clm`; a run of
    another objective does not evaluate it."""
    monkeypatch.setattr(objectives, "_registered", {})
    monkeypatch.setattr(first_half_batch, "labelled", [], raising=False)
    register_objective(Objective("first_half", first_half_batch, rows=first_half_rows))
    assert "first_half" in train_parser().format_help()
    job = TrainJob.from_argv([*TINY, "--objective", "first_half", "--output-dir", str(tmp_path / "run")])
    summary = train.run(job)
    final = summary["final"]
    assert summary["config"]["objective"] == "first_half" and summary["steps"] == 1
    assert {"eval_first_half_loss", "eval_first_half_accuracy", "eval_clm_loss"} <= set(final)
    assert final["eval_first_half_loss"] != final["eval_clm_loss"]  # half the targets: another loss on the same rows
    # the layout check, one training batch and the held-out batches, each with the rows' own targets
    assert len(first_half_batch.labelled) >= 3 and all(first_half_batch.labelled)
    config = train.load_pretrained(str(tmp_path / "run" / "final")).config
    assert [o.name for o in train.evaluated_objectives(job, config)] == ["clm", "first_half"]
    assert [o.name for o in train.evaluated_objectives(tiny_job(tmp_path), config)] == ["clm"]


def test_a_layout_an_objective_cannot_build_stops_the_run_before_it_starts(tmp_path):
    """Every objective of a run builds one batch of its rows first: a memory model at an odd context (copy and
    blank copy need an even one) is refused naming the objective and the context, before run.json is written."""
    job = TrainJob.from_argv([*TINY, "--preset", "memory-transformer-tiny", "--context", "15", "--output-dir",
                              str(tmp_path / "run")])
    with pytest.raises(ValueError, match="the 'copy' objective cannot use --context 15: .*even sequence length"):
        train.run(job)
    assert not (tmp_path / "run" / "run.json").exists()


def test_an_unknown_objective_is_refused_with_the_registered_ones(tmp_path, capsys):
    """`--objective mlm` exits 2 listing the registered objectives; `TrainJob(objective="mlm")` is a ValueError
    listing them."""
    with pytest.raises(SystemExit) as stop:
        cli_main(["train", *TINY, "--objective", "mlm", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "invalid choice: 'mlm'" in err
    assert all(name in err.splitlines()[-1] for name in ("clm", "copy", "blank_copy", "combined", "autoencode"))
    with pytest.raises(ValueError, match="unknown objective 'mlm'; registered: clm, copy, blank_copy, "
                                         "copy_and_blank_copy, combined, "
                                         "combined_blank, autoencode"):
        tiny_job(tmp_path, objective="mlm")


@pytest.mark.parametrize("argv, old, new", [
    (["readback", "--chunk", "8"], "--chunk", "--chunk-size"),
    (["readback", "--slots", "4"], "--slots", "--memory-slots"),
    (["readback", "--vocab", "64"], "--vocab", "--vocab-size"),
    (["demo", "--slots", "4"], "--slots", "--memory-slots"),
    (["demo", "--chunk", "8"], "--chunk", "--chunk-size"),  # once taken silently, as an abbreviation
    (["demo", "--decoder", "mixer"], "--decoder", "--family"),  # demo's decoder is now its family's
    (["convert", "--decoder", "d", "--output", "o", "--chunk", "8"], "--chunk", "--chunk-size"),
    (["tokenizer", "--output", "o", "--vocab", "300"], "--vocab", "--vocab-size"),
    (["train", "--preset", "transformer-clm-tiny", "--output-dir", "o", "--vocab", "300"], "--vocab", "--vocab-size"),
])
def test_old_option_spellings_are_refused_with_the_new_one(argv, old, new, capsys):
    """One spelling per option in every command: an old one exits 2 with one line naming the new one."""
    with pytest.raises(SystemExit) as stop:
        cli_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err == f"memory-models {argv[0]}: error: {old} was renamed {new}\n"


def test_a_given_model_gets_the_jobs_encoder_and_freezing(tmp_path):
    """`train.run(job, model=...)` applies the job's `encoder_from` and `freeze_encoder` to the given model as to a
    preset: the final encoder is the source's, untouched by training, and only the rest trains; metrics.json names
    the given model's class, not the job's placeholder preset."""
    from memory_models.configuration import build_model, get_preset

    tokenizer = train.load_tokenizer(None)
    config = get_preset("memory-transformer-tiny", vocab_size=len(tokenizer))
    source = build_model(config)
    source.save_pretrained(tmp_path / "source")
    job = TrainJob(output_dir=str(tmp_path / "run"), preset="memory-transformer-tiny", objective="blank_copy",
                   train_documents=16, eval_documents=4, batch_size=2, max_steps=2, eval_steps=2,
                   learning_rate=1e-2, encoder_from=str(tmp_path / "source"), freeze_encoder=True)
    torch.manual_seed(1)
    summary = train.run(job, model=build_model(config))
    final = train.load_pretrained(str(tmp_path / "run" / "final"))
    for name, tensor in source.encoder.state_dict().items():
        torch.testing.assert_close(final.encoder.state_dict()[name], tensor)
    encoder_size = sum(p.numel() for p in source.encoder.parameters())
    assert summary["config"]["trainable_parameters"] == summary["config"]["parameters"] - encoder_size
    assert summary["config"]["freeze_encoder"] is True
    assert summary["config"]["preset"] is None and summary["config"]["model_class"] == "MemoryForCausalLM"
