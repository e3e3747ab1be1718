"""lm-eval end to end: the `lm_eval` console command and `memory-models eval` on every causal family, offline.

The installed mmlu / longbench / swde task definitions run on local look-alike data (eval.harness.lookalike). Each
family is a tiny random model whose advertised context (256 tokens; for the memory models through the rolling
memory window, twice what their 4 slots hold) fits lm-eval's generation budgets (qasper: 128 new tokens); the
look-alike contexts are longer than that, so lm-eval truncates them as on the real data.
"""

import json
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from memory_models.conversion.safe_io import is_our_picture  # noqa: E402
from memory_models.eval.harness.runner import evaluate_model, metric_table  # noqa: E402
from memory_models.eval.harness.lookalike import write_lookalike_tasks  # noqa: E402

CONTEXT, CHUNK, SLOTS = 256, 32, 4
TASKS = "mmlu,longbench,swde"
LIMIT = 2
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def family_config(family: str, vocab: int):
    from transformers import LlamaConfig

    from memory_models.modeling_memory import MaskedMixerConfig, MemoryConfig, RecurrentMemoryConfig

    special = dict(pad_token_id=1, bos_token_id=0, eos_token_id=1)

    def llama(positions):
        return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, max_position_embeddings=positions, **special)

    def mixer(length):
        return MaskedMixerConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                 max_position_embeddings=length, kernel_size=2, **special)

    # Memory models: 4 slots of 32 tokens, read through the rolling window, advertise CONTEXT (twice that).
    rolling = dict(chunk_size=CHUNK, num_memory_slots=SLOTS, memory_window="rolling", max_context=CONTEXT, **special)
    if family == "memory_transformer":
        return MemoryConfig(llama(CHUNK), llama(CHUNK + SLOTS), **rolling)
    if family == "memory_mixer":
        return MemoryConfig(mixer(CHUNK), mixer(CHUNK + SLOTS), filler="zeros", **rolling)
    slots = CONTEXT // CHUNK
    if family == "masked_mixer":
        return mixer(CONTEXT)
    if family == "recurrent_memory":
        return RecurrentMemoryConfig(llama(CHUNK + 2), chunk_size=CHUNK, max_segments=slots, **special)
    return llama(CONTEXT)


FAMILIES = ["memory_transformer", "memory_mixer", "masked_mixer", "recurrent_memory", "llama"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Look-alike tasks, a byte-level BPE trained on their text, and one saved tiny model per family."""
    from memory_models.configuration import build_model
    from memory_models.training.data.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("lm_eval_cli")
    tasks = write_lookalike_tasks(root / "tasks", docs=LIMIT, context_chars=1500)
    texts = [line for path in sorted((tasks / "data").glob("*.jsonl")) for line in path.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, vocab_size=384)
    models = {}
    for index, family in enumerate(FAMILIES):
        torch.manual_seed(index)
        model = build_model(family_config(family, len(tokenizer))).eval()
        models[family] = root / family
        model.save_pretrained(models[family])
        tokenizer.save_pretrained(models[family])
    return {"root": root, "tasks": tasks, "models": models}


# What the `lm_eval` console script does (`sys.argv` + `lm_eval.__main__.cli_evaluate()`), once per run, in one
# interpreter that cannot import this repository's packages: models load from their folders' remote code, as
# on a Hub user's machine, and lm-eval's start-up (imports, task index) is paid once for the matrix.
DRIVER = """
    import json, sys
    from lm_eval.__main__ import cli_evaluate
    from lm_eval.tasks import _index

    # Index the ~10k installed task YAMLs once (~20 s of CPU), not once per run.
    built, build = {}, _index.TaskIndex.build
    def build_once(paths, **kwargs):
        key = (tuple(map(str, paths)), tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = build(paths, **kwargs)
        return dict(built[key])
    _index.TaskIndex.build = staticmethod(build_once)
    runs = json.loads(sys.argv[1])
    for argv in runs:
        sys.argv = ["lm_eval", *argv]
        cli_evaluate()
    print(json.dumps({"runs": len(runs)}))
"""
# Batch 4 for every family; batch 1 too (the comparison) where rows carry their own state: the memory models'
# per-row chunk phase, the RMT's per-row segment cache. (lm-eval runs cost ~1 min each on 2 busy cores.)
BATCH_SIZES = {"memory_transformer": (1, 4), "memory_mixer": (4,), "masked_mixer": (4,),
               "recurrent_memory": (1, 4), "llama": (4,)}


def cli_arguments(model_dir: Path, tasks_dir: Path, output: Path, batch_size: int) -> list[str]:
    return ["--model", "hf", "--model_args", f"pretrained={model_dir},trust_remote_code=True", "--tasks", TASKS,
            "--include_path", str(tasks_dir), "--device", "cpu", "--batch_size", str(batch_size),
            "--limit", str(LIMIT), "--output_path", str(output), "--log_samples", "--seed", "0"]


def read_run(output: Path) -> tuple[dict, dict]:
    """lm-eval's results JSON and `{task: logged samples}` from one `--output_path`."""
    (results_file,) = output.rglob("results_*.json")
    samples = {}
    for path in output.rglob("samples_*.jsonl"):
        task = re.match(r"samples_(.+)_\d{4}-\d{2}-\d{2}T.*\.jsonl", path.name).group(1)
        samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return json.loads(results_file.read_text()), samples


@pytest.fixture(scope="module")
def matrix(workspace):
    """Every family at batch sizes 1 and 4 through lm-eval's command line: {(family, batch): (results, samples)}."""
    from memory_models.conversion.isolation import run_without_our_packages

    runs, outputs = [], {}
    for family in FAMILIES:
        for batch_size in BATCH_SIZES[family]:
            outputs[family, batch_size] = workspace["root"] / f"out_{family}_b{batch_size}"
            runs.append(cli_arguments(workspace["models"][family], workspace["tasks"], outputs[family, batch_size],
                                      batch_size))
    env = {**OFFLINE, "OMP_NUM_THREADS": "1"}  # one thread: tiny models, and no spinning on shared cores
    assert run_without_our_packages(DRIVER, json.dumps(runs), env=env, timeout=900) == {"runs": len(runs)}
    return {key: read_run(output) for key, output in outputs.items()}


def contains(prediction: str, value: str) -> float:
    return float(re.search(re.escape(value), prediction, re.IGNORECASE) is not None)


def loglikelihoods(samples: list) -> torch.Tensor:
    return torch.tensor([[float(r[0]) for r in s["filtered_resps"]] for s in samples])


def generations(samples: list) -> list:
    return [s["filtered_resps"][0] for s in samples]


EXPECTED_TASKS = {"mmlu_abstract_algebra", "longbench_qasper", "longbench_lcc", "longbench_trec", "swde"}
GENERATION_TASKS = ("longbench_qasper", "longbench_lcc", "longbench_trec", "swde")


@pytest.mark.parametrize("family", FAMILIES)
def test_lm_eval_command_runs_every_task(matrix, family):
    """mmlu (loglikelihood), longbench and swde (generation) run through `lm_eval --model hf`; MMLU accuracy and
    SWDE `contains` recomputed from the logged samples equal the reported ones; where batch 1 runs too, batch 4
    gives its per-document loglikelihoods and generations."""
    for batch_size in BATCH_SIZES[family]:
        results, samples = matrix[family, batch_size]
        assert EXPECTED_TASKS <= set(results["results"]) and EXPECTED_TASKS <= set(samples)
        assert {"mmlu", "longbench"} <= set(results["groups"])
        mmlu = samples["mmlu_abstract_algebra"]
        assert len(mmlu) == LIMIT
        accuracy = sum(float(int(loglikelihoods([s])[0].argmax()) == int(s["target"])) for s in mmlu) / LIMIT
        assert results["results"]["mmlu_abstract_algebra"]["acc,none"] == pytest.approx(accuracy)
        swde = samples["swde"]
        recomputed = sum(contains(s["filtered_resps"][0], s["doc"]["value"]) for s in swde) / len(swde)
        assert results["results"]["swde"]["contains,none"] == pytest.approx(recomputed)
        for task in GENERATION_TASKS:
            assert len(samples[task]) == LIMIT and all(isinstance(g, str) for g in generations(samples[task]))
    if 1 not in BATCH_SIZES[family]:
        return
    (_, one), (_, four) = matrix[family, 1], matrix[family, 4]
    torch.testing.assert_close(loglikelihoods(four["mmlu_abstract_algebra"]),
                               loglikelihoods(one["mmlu_abstract_algebra"]), atol=1e-4, rtol=1e-4)
    for task in GENERATION_TASKS:
        assert generations(four[task]) == generations(one[task]), task


def test_python_api_matches_the_command_line(workspace, matrix):
    """`evaluate_model` (what `memory-models eval` runs, in process) gives the command line's documents' scores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        api = evaluate_model(str(workspace["models"]["memory_transformer"]), TASKS.split(","), limit=LIMIT,
                             batch_size=4, include_path=str(workspace["tasks"]), log_samples=True)
    finally:
        torch.set_num_threads(threads)
    _, samples = matrix["memory_transformer", 4]
    torch.testing.assert_close(loglikelihoods(api["samples"]["mmlu_abstract_algebra"]),
                               loglikelihoods(samples["mmlu_abstract_algebra"]), atol=1e-4, rtol=1e-4)
    for task in GENERATION_TASKS:
        assert generations(api["samples"][task]) == generations(samples[task]), task
    table = metric_table(api)
    assert table[("swde", "contains,none")] == matrix["memory_transformer", 4][0]["results"]["swde"]["contains,none"]


def test_memory_models_eval_writes_side_by_side_table(workspace, capsys):
    """`memory-models eval` with two models and --no-memory: one column per model and ablation in the Markdown
    table, each cell equal to that run's own results JSON; the ablation really changes the memory models."""
    from memory_models.eval.cli import main

    models, output = workspace["models"], workspace["root"] / "compare"
    argv = ["eval", "--model", str(models["memory_transformer"]), "--model", str(models["memory_mixer"]),
            "--tasks", "mmlu", "--include-path", str(workspace["tasks"]), "--limit", str(LIMIT), "--no-memory",
            "--batch-size", "4", "--output-dir", str(output), "--log-samples"]
    assert main(argv) == 0
    summary = json.loads((output / "comparison.json").read_text())
    labels = ["memory_transformer", "memory_transformer (no memory)", "memory_mixer", "memory_mixer (no memory)"]
    assert list(summary["models"]) == labels
    header, _, *rows = (output / "comparison.md").read_text().splitlines()
    assert header == "| task | metric | " + " | ".join(labels) + " |"
    row = next(r for r in rows if r.startswith("| mmlu_abstract_algebra | acc |"))
    cells = [float(c) for c in row.strip("|").split("|")[2:]]
    for label, cell in zip(labels, cells):
        results = json.loads((output / summary["models"][label]["results_file"]).read_text())
        assert cell == pytest.approx(results["results"]["mmlu_abstract_algebra"]["acc,none"], abs=1e-4)
    for label in labels[::2]:
        kept = json.loads((output / summary["models"][label]["results_file"]).read_text())
        ablated = json.loads((output / summary["models"][f"{label} (no memory)"]["results_file"]).read_text())
        assert loglikelihoods(kept["samples"]["mmlu_abstract_algebra"]).ne(
            loglikelihoods(ablated["samples"]["mmlu_abstract_algebra"])).any(), label
    png = output / "comparison.png"
    if summary_has_matplotlib():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and is_our_picture(png)
    else:
        assert not png.exists() and "matplotlib is not installed" in capsys.readouterr().err


def summary_has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_autoencoder_and_bad_arguments_get_clear_errors(workspace, tmp_path, capsys):
    """An autoencoder is refused with a pointer to `memory-models retention`; --no-memory on a model without
    memories, unknown tasks and a foreign output folder are ValueErrors naming the values, before any work."""
    from memory_models.configuration import build_model, get_preset
    from memory_models.eval.harness.runner import check_causal_lm, load_model
    from memory_models.eval.cli import main

    autoencoder = tmp_path / "autoencoder"
    build_model(get_preset("autoencoder-tiny")).save_pretrained(autoencoder)
    with pytest.raises(ValueError, match=r"memory autoencoder .*memory-models retention --encoder"):
        check_causal_lm(str(autoencoder))
    assert main(["eval", "--model", str(autoencoder), "--tasks", "mmlu", "--output-dir", str(tmp_path / "a")]) == 2
    assert "memory-models retention" in capsys.readouterr().err and not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="'masked_mixer' model without that switch"):
        load_model(str(workspace["models"]["masked_mixer"]), no_memory=True)
    with pytest.raises(ValueError, match=r"unknown lm-eval tasks \['no_such_task'\]"):
        evaluate_model(str(workspace["models"]["llama"]), ["no_such_task"], limit=1, include_path=workspace["tasks"])
    argv = ["eval", "--model", str(workspace["models"]["llama"]), "--tasks", "mmlu,no_such_task",
            "--include-path", str(workspace["tasks"]), "--output-dir", str(tmp_path / "b")]
    assert main(argv) == 2 and "no_such_task" in capsys.readouterr().err and not (tmp_path / "b").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    argv = ["eval", "--model", str(workspace["models"]["llama"]), "--tasks", "mmlu", "--include-path",
            str(workspace["tasks"]), "--output-dir", str(foreign)]
    assert main(argv) == 2 and "memory-models did not create" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="memory-models did not create"):
        write_lookalike_tasks(foreign)


def test_rolling_context_lets_a_short_window_model_take_long_inputs(tmp_path):
    """`--rolling-context N` reads a memory model trained on a 32-token window through the rolling window: it
    advertises N tokens and takes inputs the bounded model refuses, with the same logits where both apply."""
    from memory_models.configuration import build_model, get_preset
    from memory_models.eval.harness.runner import load_model

    torch.manual_seed(0)
    build_model(get_preset("memory-transformer-tiny")).save_pretrained(tmp_path / "mt")
    bounded = load_model(str(tmp_path / "mt"))
    rolling = load_model(str(tmp_path / "mt"), rolling_context=96)
    assert bounded.config.max_position_embeddings == 32
    assert (rolling.config.memory_window, rolling.config.max_position_embeddings) == ("rolling", 96)
    ids = torch.randint(2, 99, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with pytest.raises(ValueError):
            bounded(ids)
        torch.testing.assert_close(rolling(ids[:, :24]).logits, bounded(ids[:, :24]).logits)
        assert torch.isfinite(rolling(ids).logits).all()
    from memory_models.eval.harness.runner import with_rolling_window
    from transformers import LlamaConfig

    with pytest.raises(ValueError, match="--rolling-context needs a memory model"):
        with_rolling_window("plain", LlamaConfig(), 96)
    with pytest.raises(ValueError, match="positive number of tokens, got 0"):
        load_model(str(tmp_path / "mt"), rolling_context=0)
