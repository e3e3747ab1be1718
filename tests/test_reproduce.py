"""`memory-models reproduce` end to end at tiny scale (the pipeline, not the paper's targets): every part trains its
models once, keeps them as Hub folders, writes JSON in the documented schema, Markdown and pictures."""

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import memory_models.modeling_memory  # noqa: F401  (registers the Auto classes)

from memory_models.eval.experiments import reproduce
from memory_models.eval.experiments.arguments import reproduce_parser
from tokenizer_loading import assert_tokenizer_loads_quietly


def run(part, output_dir, seeds=1):
    argv = [part, "--output-dir", str(output_dir), "--seeds", str(seeds), "--scale", "tiny", "--device", "cpu",
            "--jobs", "1"]
    args = reproduce_parser().parse_args(argv)
    args.argv = argv
    return reproduce.run(args)


def test_reproduce_all_writes_every_part_and_reuses_its_models(tmp_path, capsys):
    reports = run("all", tmp_path)
    assert list(reports) == ["table1", "fig4d", "table3", "table4"]
    for part, report in reports.items():
        saved = json.loads((tmp_path / f"{part}.json").read_text())
        assert set(saved) >= {"part", "settings", "rows", "targets", "seconds"} and saved["part"] == part
        assert saved["rows"] and all(set(row) >= {"model", "metric", "mean", "std", "values"} for row in saved["rows"])
        assert saved["targets"] and all(set(t) == {"name", "value", "target", "met"} for t in saved["targets"])
        assert (tmp_path / f"{part}.md").read_text().startswith("### ")
        for row in saved["rows"]:  # one value per seed, and the mean of them
            assert len(row["values"]) == 1 and row["mean"] == pytest.approx(row["values"][0])
        assert saved["pictures"] and all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in saved["pictures"])
    fig4d_metrics = {row["metric"] for row in reports["fig4d"]["rows"]}
    assert {"blank-copy accuracy, chunk positions 0 .. 5", "blank-copy accuracy, chunk position 7"} <= fig4d_metrics
    assert any(p.endswith("fig4d-positions.png") for p in reports["fig4d"]["pictures"])
    table3_metrics = {row["metric"] for row in reports["table3"]["rows"]}
    assert {"copy accuracy, the decoder chunk holding the delimiter", "copy accuracy, the decoder chunks after it"} \
        <= table3_metrics
    table4_metrics = {row["metric"] for row in reports["table4"]["rows"]}
    assert "copy: key = value pairs written back after the delimiter" in table4_metrics
    assert {"extraction accuracy, 1 chunks back", "records_extraction contains"} <= table4_metrics
    table4_models = {row["model"] for row in reports["table4"]["rows"]}
    assert "curriculum, then combined + retrieval objective, memories ablated" in table4_models
    first = capsys.readouterr().out
    assert "training mixer-autoencoder-c8 (seed 0)" in first and "[table4] seed 0 done" in first
    models = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert "mixer-autoencoder-c8-seed0" in models and "records-memory-transformer-combined-seed0" in models
    assert "records-memory-transformer-combined-retrieval-seed0" in models
    for name in models:  # every trained model is a Hub folder with its tokenizer, which loads quietly
        assert (tmp_path / "models" / name / "config.json").is_file()
        assert_tokenizer_loads_quietly(tmp_path / "models" / name)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "models" / "memory-mixer-autoencoder-c8-blank-copy-seed0")
    assert type(reloaded).__name__ == "MemoryForCausalLM"
    # A second run of a part reuses every model of the first (trains nothing) and gives the same rows.
    again = run("fig4d", tmp_path)
    second = capsys.readouterr().out
    assert "training " not in second and "reusing " in second
    assert again["fig4d"]["rows"] == reports["fig4d"]["rows"]


def test_readback_oracle_memories_are_exactly_decodable_and_replace_the_encoder(tmp_path):
    """The diagnostic's oracle: a linear read of a chunk's memory recovers every token (so the decoder, not the
    memory, limits what it learns); the model's own encoder is never run; a short run writes its curves."""
    from memory_models.eval.experiments import readback
    from memory_models.eval.experiments.arguments import readback_parser

    args = readback_parser().parse_args(["--steps", "2", "--eval-every", "1", "--hidden", "32", "--layers", "1"])
    args.seed = 0
    codes = readback.oracle_codes(args.vocab, args.chunk, args.hidden, torch.Generator().manual_seed(0))
    ids = torch.randint(readback.FIRST_TOKEN, args.vocab, (256, args.chunk))
    memory = codes[torch.arange(args.chunk)[None, :], ids].sum(1)
    read = torch.einsum("jvd,nd->njv", codes, memory).argmax(-1)
    assert torch.equal(read, ids)
    model = readback.build(args)
    model.encoder.forward = None  # calling the real encoder would fail
    batch = readback.blank_copy_rows(args, 4, torch.Generator().manual_seed(0))
    assert model(**batch).loss.isfinite()
    output = tmp_path / "readback.json"
    assert readback.main(["--steps", "2", "--eval-every", "1", "--hidden", "32", "--layers", "1", "--output",
                          str(output)]) == 0
    saved = json.loads(output.read_text())
    assert [step for step, _ in saved["curves"]["0"]] == [1, 2] and len(saved["final"]) == 1
    assert readback.main(["--steps", "1", "--eval-every", "1", "--hidden", "32", "--layers", "1", "--output",
                          str(output)]) == 0  # a rerun replaces its own result
    assert [step for step, _ in json.loads(output.read_text())["curves"]["0"]] == [1]
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "numbers"}')
    with pytest.raises(ValueError, match="memory-models did not write it"):  # before any training
        readback.main(["--steps", "1", "--output", str(mine)])
    assert mine.read_text() == '{"my": "numbers"}'


def test_readback_options_reach_the_model():
    """`--position-embedding learned` gives the decoder its learned position table, and `--memory-scale` multiplies
    the oracle's memories (the two suspects the diagnostic measures)."""
    from memory_models.eval.experiments import readback
    from memory_models.eval.experiments.arguments import readback_parser

    base = ["--hidden", "32", "--layers", "1"]
    plain, learned = (readback_parser().parse_args(base + extra) for extra in
                      ([], ["--position-embedding", "learned", "--memory-scale", "2"]))
    plain.seed = learned.seed = 0
    plain_model, learned_model = readback.build(plain), readback.build(learned)
    assert plain_model.decoder_position_embeddings is None
    assert learned_model.decoder_position_embeddings.weight.shape == (plain.slots + plain.chunk, 32)
    ids = torch.randint(readback.FIRST_TOKEN, plain.vocab, (3, plain.chunk))
    mask = torch.ones_like(ids, dtype=torch.bool)
    torch.testing.assert_close(learned_model._encode_chunks(ids, mask), 2 * plain_model._encode_chunks(ids, mask))


def test_family_option_sets_the_memory_model_of_every_memory_part():
    """`small` runs the paper's memory transformer in Fig. 4(d), Table 3 and Table 4; `--family` replaces it there
    (and nothing else)."""
    small = reproduce.scale_for("small")
    assert small == reproduce.scale_for("small", "memory-transformer")
    assert (small.memory_families, small.table3_family, small.records_family) == \
        (("memory-transformer",), "memory-transformer", "memory-transformer")
    mixer = reproduce.scale_for("small", "memory-mixer")
    assert (mixer.memory_families, mixer.table3_family, mixer.records_family) == \
        (("memory-mixer",), "memory-mixer", "memory-mixer")
    assert mixer.presets == small.presets and mixer.memory_steps == small.memory_steps
    assert reproduce_parser().parse_args(["all", "--output-dir", "x"]).family is None  # the scale's: the transformer


def test_fig4d_memory_transformer_stages_get_the_reading_budget(tmp_path):
    """Fig. 4(d)'s memory-transformer stages train `transformer_read_steps` at `transformer_learning_rate` with
    `transformer_warmup_steps` (all three: the control gets the same budget); the memory mixer's keep `memory_steps`
    at the mixer rate and the scale's warmup."""
    from memory_models.eval.experiments import reproduce_stages
    from memory_models.eval.experiments.reproduce_parts import memory_stages

    def stages(family):
        return memory_stages(reproduce.scale_for("small", family), family, lambda name: tmp_path / name, tmp_path)

    small = reproduce.scale_for("small")
    transformer = stages("memory-transformer")
    assert len(transformer) == 3 and small.transformer_read_steps != small.memory_steps
    assert {(s.steps, s.learning_rate, s.warmup_steps) for s in transformer.values()} == \
        {(small.transformer_read_steps, small.transformer_learning_rate, small.transformer_warmup_steps)}
    assert small.transformer_learning_rate != small.learning_rate
    assert {(s.steps, s.learning_rate, s.warmup_steps) for s in stages("memory-mixer").values()} == \
        {(small.memory_steps, small.mixer_learning_rate, small.warmup_steps)}
    # and the run's warmup is at most a tenth of it (a transformer at 2e-3 with a 100-step warmup over 2,000 steps
    # reconstructs 57%, with 200 steps 94%)
    stage = next(iter(transformer.values()))
    options = reproduce_stages.stage_job(stage, 0, tmp_path / "run", "cpu").trainer_options
    assert stage.steps // 10 < small.transformer_warmup_steps and options["warmup_steps"] == stage.steps // 10


def test_transformer_encoders_get_their_own_budget_the_same_for_autoencoders_and_causal_lm(tmp_path):
    """Table 1's transformer autoencoders and causal LM (whose chunk-sized autoencoder Fig. 4(d) and Table 3 freeze)
    train `transformer_encoder_steps`, all of them alike; the mixer's keep `autoencoder_steps`."""
    from memory_models.eval.experiments.reproduce_parts import encoder_stages

    small = reproduce.scale_for("small")
    assert small.transformer_encoder_steps not in (None, small.autoencoder_steps)
    for arch, steps in (("transformer", small.transformer_encoder_steps), ("mixer", small.autoencoder_steps)):
        autoencoders, clm = encoder_stages(small, arch, tmp_path)
        assert sorted(autoencoders) == list(small.contexts)
        assert {stage.steps for stage in [*autoencoders.values(), clm]} == {steps}


def test_a_stage_trains_again_when_the_model_it_starts_from_was_trained_again(tmp_path):
    """A blank-copy stage over a frozen autoencoder encoder is reused while that autoencoder is the one it was
    trained from; once the autoencoder trains again (another budget), the stage on top trains again too."""
    from memory_models.eval.experiments.reproduce_parts import ENCODERS, encoder_stages, memory_stages
    from memory_models.eval.experiments.reproduce_stages import (
        SCALES, STAGE_FILE, Context, corpus_tokenizer, run_stage,
    )

    scale = SCALES["tiny"]
    tokenizer = corpus_tokenizer(tmp_path, scale.dataset, scale.vocab_size, scale.train_documents)
    messages = []
    context = Context(tmp_path, "cpu", messages.append)
    autoencoder = encoder_stages(scale, "mixer", tokenizer)[0][scale.contexts[0]]
    read = memory_stages(scale, "memory-mixer", lambda name: context.model_dir(name, 0), tokenizer)[ENCODERS[0]]

    def trained(stage):
        messages.clear()
        run_stage(context, stage, 0)
        return any(message.startswith(f"training {stage.name} ") for message in messages)

    assert trained(autoencoder) and trained(read)
    assert not trained(read)  # the same settings, the same autoencoder: reused
    recorded = json.loads((context.run_dir(read.name, 0) / STAGE_FILE).read_text())["inputs"]
    assert list(recorded) == [str(context.model_dir(autoencoder.name, 0))]
    assert trained(replace(autoencoder, steps=autoencoder.steps + 1))
    assert trained(read)  # its settings did not change, its encoder did
    changed = json.loads((context.run_dir(read.name, 0) / STAGE_FILE).read_text())["inputs"]
    assert changed.keys() == recorded.keys() and changed != recorded


def test_a_stage_that_starts_from_a_model_changes_only_its_loss_weights(tmp_path):
    """Table 4's combined + retrieval stage continues from the blank-copy model with its own retrieval-loss weight:
    the loaded model keeps its weights and gets the weight; any other config change of a loaded model is a
    ValueError naming it (it would not match the weights)."""
    from memory_models.configuration import build_model, get_preset
    from memory_models.eval.experiments.reproduce_stages import ModelSpec, build_stage_model

    saved = build_model(get_preset("memory-transformer-tiny"))
    saved.save_pretrained(tmp_path / "blank")
    loaded = build_stage_model(ModelSpec(init_from=str(tmp_path / "blank"),
                                         overrides=(("retrieval_loss_weight", 0.5),)), None, 0)
    assert loaded.config.retrieval_loss_weight == 0.5 != saved.config.retrieval_loss_weight
    torch.testing.assert_close(loaded.state_dict(), saved.state_dict())
    with pytest.raises(ValueError, match="can change its loss weights only, got chunk_size=8"):
        build_stage_model(ModelSpec(init_from=str(tmp_path / "blank"), overrides=(("chunk_size", 8),)), None, 0)


def test_extraction_questions_cover_every_distance_with_the_value_that_far_back():
    """Table 4's distance questions: each document is asked at most once per chunk distance 1 .. S-1, most
    documents at 1 and 2 (a key far into its record cannot be 1 chunk back) and some at S-1; the prompt ends with
    the record's key, the stated value's first token lies exactly `distance` chunks before the answer, and the
    question with its answer fits one decoder window (the answer's chunk reads the whole stated record, as in
    retrieval training)."""
    from memory_models.eval.experiments.reproduce_table4 import distance_questions
    from memory_models.training.data.corpora import records_documents
    from memory_models.training.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(records_documents(200, 0, "train"), vocab_size=512)  # the `small` records tokenizer
    chunk, slots, documents = 16, 4, 8
    questions = distance_questions(tokenizer, chunk, slots, documents, seed=0)
    assert sorted({q["distance"] for q in questions}) == [1, 2, 3]
    counts = [sum(q["distance"] == d for q in questions) for d in (1, 2, 3)]
    # 3 chunks back needs the value in the window's first chunk: early keys only
    assert all(documents // 2 <= count <= documents for count in counts[:2]) and 1 <= counts[2] < documents, counts
    for question in questions:
        text = tokenizer.decode(question["input_ids"])
        assert text.endswith(" =") and f"= {question['value']}" in text
        value_start = text.index(f"= {question['value']}") + 2  # the stated record comes first
        ends = [len(tokenizer.decode(question["input_ids"][: i + 1])) for i in range(len(question["input_ids"]))]
        value_token = next(i for i, end in enumerate(ends) if end > value_start)
        assert len(question["input_ids"]) // chunk - value_token // chunk == question["distance"]
        answer = tokenizer(" " + question["value"], add_special_tokens=False)["input_ids"]
        assert len(question["input_ids"]) + len(answer) <= chunk * slots


def test_table3_frozen_encoder_row_is_a_curriculum_on_the_autoencoder_and_its_control_trains_as_long(tmp_path):
    """Table 3's second row: over the frozen encoder of the chunk-sized autoencoder (Table 1's, trained once for
    both parts), `combined_blank` first, then the combined objective from that model; the causal control starts
    fresh on the same encoder and trains as many steps as both; the all-trainable row builds from the preset."""
    from memory_models.eval.experiments.reproduce_parts import TABLE3_ENCODERS, table3_stages

    for family in ("memory-mixer", "memory-transformer"):
        scale = reproduce.scale_for("small", family)
        (autoencoder, curriculum), stages = table3_stages(scale, lambda name: tmp_path / name, tmp_path)
        assert autoencoder.objective == "autoencode" and autoencoder.context == scale.contexts[0]
        assert curriculum.objective == "combined_blank"
        assert curriculum.model.encoder_from == str(tmp_path / autoencoder.name)
        trainable, frozen = TABLE3_ENCODERS
        combined, clm = stages[(frozen, "combined")], stages[(frozen, "clm")]
        assert combined.model.init_from == str(tmp_path / curriculum.name) and combined.objective == "combined"
        assert clm.model.encoder_from == curriculum.model.encoder_from and clm.model.init_from is None
        assert clm.objective == "clm" and clm.steps == curriculum.steps + combined.steps
        for objective in ("combined", "clm"):
            model = stages[(trainable, objective)].model
            assert (model.encoder_from, model.init_from) == (None, None)
        assert len({stage.name for stage in [autoencoder, curriculum, *stages.values()]}) == 6


def test_copy_by_chunk_splits_held_out_copy_at_the_delimiter_chunk(tmp_path, monkeypatch):
    """Table 3's copy accuracy in the decoder chunk holding the copy delimiter and in the chunks after it, scored on
    held-out copy rows: a model that copies only in the delimiter's chunk scores 1 there and 0 after it."""
    from memory_models.configuration import get_preset
    from memory_models.eval.experiments import reproduce_parts
    from memory_models.eval.experiments.reproduce_stages import SCALES, corpus_tokenizer

    scale = SCALES["tiny"]
    tokenizer = corpus_tokenizer(tmp_path, scale.dataset, scale.vocab_size, scale.train_documents)
    config = get_preset("memory-transformer-tiny", vocab_size=scale.vocab_size)
    chunk, window = config.chunk_size, config.chunk_size * config.num_memory_slots
    delimiter_chunk = (window // 2) // chunk
    seen = []

    class CopiesInTheDelimiterChunkOnly(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, labels=None):
            seen.append(input_ids)
            target = labels.roll(-1, dims=1).clamp(min=0)  # logits position t predicts label t + 1
            right = (torch.arange(window) + 1) // chunk == delimiter_chunk
            predicted = torch.where(right, target, (target + 1) % scale.vocab_size)
            return SimpleNamespace(logits=torch.nn.functional.one_hot(predicted, scale.vocab_size).float())

    model = CopiesInTheDelimiterChunkOnly()
    model.config = config
    monkeypatch.setattr(reproduce_parts, "load_model_and_tokenizer",
                        lambda folder: (model, AutoTokenizer.from_pretrained(tokenizer)))
    assert reproduce_parts.copy_by_chunk(tmp_path, scale.dataset, scale.eval_documents, 0, "cpu") == (1.0, 0.0)
    rows = seen[0]  # copy rows with their tokens in view: the delimiter, then the first half again
    delimiter = window // 2 + torch.arange(config.copy_delimiter_length)
    assert (rows[:, delimiter] == config.copy_delimiter_token_id).all()
    assert torch.equal(rows[:, delimiter[-1] + 1:], rows[:, config.copy_delimiter_length:window // 2])


def test_table3_targets_check_each_row():
    """A met all-trainable row does not hide a missed frozen-encoder row."""
    from memory_models.eval.experiments.reproduce_parts import TABLE3_ENCODERS, table3_label, table3_targets

    scale = reproduce.scale_for("small", "memory-transformer")
    rows = {}
    for encoder, (combined, clm) in zip(TABLE3_ENCODERS, ((0.5, 0.2), (0.3, 0.2))):
        rows[(table3_label(scale, "combined", encoder), "copy accuracy")] = combined
        rows[(table3_label(scale, "clm", encoder), "copy accuracy")] = clm
        rows[(table3_label(scale, "combined", encoder), "CLM accuracy")] = 0.25
        rows[(table3_label(scale, "clm", encoder), "CLM accuracy")] = 0.26
    met = {t["name"]: t["met"] for t in table3_targets(rows, scale)}
    assert met == {"all trainable: copy accuracy, combined / causal objective": True,
                   "all trainable: CLM accuracy, |combined - causal objective|": True,
                   "frozen autoencoder encoder: copy accuracy, combined / causal objective": False,
                   "frozen autoencoder encoder: CLM accuracy, |combined - causal objective|": True}


def test_table4_memory_transformer_reads_for_the_reading_budget_and_its_control_trains_as_long():
    """Table 4's blank-copy stage gives an attention decoder `transformer_read_steps` (the mixer keeps
    `records_steps`), and its autoencoder the records budget of a transformer autoencoder; the combined + retrieval
    stage trains `records_retrieval_steps` (the transformer's with `records_transformer_retrieval_loss_weight`); the
    causal control as many steps as blank copy and combined together."""
    from memory_models.eval.experiments.reproduce_table4 import records_stages

    for family, read in (("memory-transformer", "transformer_read_steps"), ("memory-mixer", "records_steps")):
        scale = reproduce.scale_for("small", family)
        stages = records_stages(scale, Path("tokenizer"), lambda name: Path("models") / name)
        assert stages["blank"].steps == getattr(scale, read)
        assert stages["combined"].steps == scale.records_steps
        assert stages["retrieval"].steps == scale.records_retrieval_steps != scale.records_steps  # answers learn late
        assert stages["causal"].steps == stages["blank"].steps + stages["combined"].steps
        weights = dict(stages["retrieval"].model.overrides)  # the transformer's retrieval stream weighs less
        assert weights == ({"retrieval_loss_weight": scale.records_transformer_retrieval_loss_weight}
                           if family == "memory-transformer" else {})
        autoencoder = stages["autoencoder"]
        if family == "memory-transformer":  # its own budget on records
            assert (autoencoder.steps, autoencoder.learning_rate) == (
                scale.records_transformer_autoencoder_steps, scale.records_transformer_autoencoder_learning_rate)
        else:
            assert (autoencoder.steps, autoencoder.learning_rate) == (scale.records_steps, scale.mixer_learning_rate)
    small = reproduce.scale_for("small")  # the transformer's budgets differ from the mixer's (else nothing is tested)
    assert small.records_steps not in (small.transformer_read_steps, small.records_transformer_autoencoder_steps)


def test_available_cpus_are_the_cores_this_process_may_use(monkeypatch):
    """`taskset -c 0 memory-models reproduce ...` trains on one thread, not on as many as the machine has."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert reproduce.available_cpus() == 1


def test_the_table4_picture_is_titled_by_what_it_draws(tmp_path):
    """Table 4's curves are extraction accuracy by distance (its bits per byte are table rows): title and x axis
    say so; the other parts' curves keep their part's title and the step axis."""
    by_distance = {0: {"retention": {}, "curves": {"causal": {"extraction accuracy": [[1, 0.1], [2, 0.12]]}}}}
    reproduce.pictures("table4", by_distance, tmp_path, reproduce.TITLES["table4"])
    svg = (tmp_path / "table4-curves.svg").read_text()  # SVG text stays text (training/plot.py)
    assert "records extraction by distance" in svg and "perplexity" not in svg
    assert "chunks between the record and the question" in svg and "optimizer step" not in svg
    by_step = {0: {"retention": {}, "curves": {"causal": {"copy accuracy": [[100, 0.2], [200, 0.3]]}}}}
    reproduce.pictures("table3", by_step, tmp_path, reproduce.TITLES["table3"])
    svg = (tmp_path / "table3-curves.svg").read_text()
    assert reproduce.TITLES["table3"].split(" (")[0] in svg and "optimizer step" in svg


OUTPUT_TO = """
import os, subprocess, sys
from memory_models.eval.experiments.workers import output_to
print("before", flush=True)
with output_to(sys.argv[1]):
    print("python stdout")
    sys.stderr.write("python stderr\\n")
    os.write(2, b"native stderr\\n")
    subprocess.run([sys.executable, "-c", "print('a child process')"])
print("after", flush=True)
try:
    with output_to(sys.argv[1]):
        raise RuntimeError("boom")
except RuntimeError:
    print("caught", flush=True)
"""


def test_output_to_sends_everything_printed_to_the_log_and_restores_the_terminal(tmp_path):
    """Python's and native writes, and child processes, go to the log (appended); the terminal gets them back
    afterwards; an escaping error's traceback is logged and the error still raised."""
    import subprocess
    import sys

    log = tmp_path / "seed-0.log"
    log.write_text("an earlier run\n")
    done = subprocess.run([sys.executable, "-c", OUTPUT_TO, str(log)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "before\nafter\ncaught\n", "")
    text = log.read_text()
    assert text.startswith("an earlier run\n")
    for line in ("python stdout", "python stderr", "native stderr", "a child process", "RuntimeError: boom"):
        assert line in text


SIDE_BY_SIDE = """
import os, sys
from memory_models.eval.experiments import reproduce
from memory_models.eval.experiments.arguments import reproduce_parser


def part(context, scale, seed, tokenizer):  # a stand-in part: noise on both streams, one progress line, a result
    print(f"noise of seed {seed}", flush=True)
    os.write(2, f"native noise of seed {seed}\\n".encode())
    context.report(f"step of seed {seed}")
    return {"values": [{"model": "m", "metric": "x", "value": 0.5 + seed}], "curves": {}, "retention": {}}


reproduce.PARTS["fig4d"] = (part, lambda means, scale, per_seed: [])  # the spawned workers run this file too
if __name__ == "__main__":
    args = reproduce_parser().parse_args(["fig4d", "--output-dir", sys.argv[1], "--seeds", "2", "--jobs", "2",
                                          "--scale", "tiny", "--device", "cpu"])
    args.argv = None
    reproduce.run(args)
"""


def test_seeds_side_by_side_report_progress_here_and_the_rest_in_their_logs(tmp_path):
    """The default CPU path (one worker per seed): progress lines and results reach the terminal and the part's
    JSON (aggregated over both seeds); everything else a seed prints goes to its own logs/seed-K.log."""
    import subprocess
    import sys

    script = tmp_path / "side_by_side.py"
    script.write_text(SIDE_BY_SIDE)
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, str(script), str(output)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[seed 0] step of seed 0" in done.stdout and "[seed 1] step of seed 1" in done.stdout
    assert "noise" not in done.stdout + done.stderr and f"{output / 'logs'}/seed-K.log" in done.stdout
    for seed in (0, 1):
        log = (output / "logs" / f"seed-{seed}.log").read_text()
        assert f"noise of seed {seed}" in log and f"native noise of seed {seed}" in log
        assert f"[seed {seed}] step of seed {seed}" in log and f"seed {1 - seed}" not in log
    row = json.loads((output / "fig4d.json").read_text())["rows"][0]
    assert row["values"] == [0.5, 1.5] and row["mean"] == pytest.approx(1.0)


def test_a_failing_seed_is_announced_at_once_and_its_error_raised_when_the_others_are_done(capsys):
    """Seed 1 fails while seed 0 still reports: the failure is printed once, with seed 1's log; every message is
    still handled; the error is raised at the end."""
    import queue
    from concurrent.futures import Future

    done, failed = Future(), Future()
    failed.set_exception(ValueError("no such corpus"))
    messages, handled = queue.Queue(), []
    for message in (("log", 0, "training a"), ("log", 0, "training b")):
        messages.put(message)

    def handle(kind, seed, payload):
        handled.append(payload)
        if len(handled) == 2:
            done.set_result(None)

    with pytest.raises(ValueError, match="no such corpus"):
        reproduce._collect(messages, [done, failed], handle, ["logs/seed-0.log", "logs/seed-1.log"])
    out = capsys.readouterr().out
    assert handled == ["training a", "training b"]
    assert out.count("[seed 1] failed: ValueError: no such corpus (its output and traceback: logs/seed-1.log)") == 1
    assert "[seed 0] failed" not in out
