"""The pretrained-decoder recipe of docs/pretrained-decoders.md (convert -> autoencoder -> blank copy -> copy, full and LoRA -> merge ->
extract -> lm-eval before/after), run verbatim at tiny scale on a look-alike Llama 3.2 folder, offline.
Its `.venv/bin/memory-models` and `.venv/bin/lm_eval` start warm (tests/warm_venv.py)."""

import json
import os
import pathlib
import re
import subprocess

import torch
from safetensors.torch import load_file

from pretrained_lookalike import make_decoder_folder

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK = """task: recipe_tiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""
DOCS = [{"question": "record 17: color =", "choices": [" teal", " oslo", " blue"], "answer": 0},
        {"question": "def add(a, b): return", "choices": [" a + b", " fox", " dog"], "answer": 0},
        {"question": "the quick brown", "choices": [" fox", " city", " 0123"], "answer": 0},
        {"question": "The memory model reads the", "choices": [" embeddings", " lazy", " teal"], "answer": 0}]


def recipe_block() -> str:
    text = (ROOT / "docs" / "pretrained-decoders.md").read_text()
    block = re.search(r"<!-- recipe:start -->\n```bash\n(.*?)```\n<!-- recipe:end -->", text, re.S)
    assert block, "docs/pretrained-decoders.md has no recipe block"
    return block.group(1)


def lm_eval_accuracy(folder: pathlib.Path) -> float:
    (results,) = folder.rglob("results_*.json")
    return json.loads(results.read_text())["results"]["recipe_tiny"]["acc,none"]


def test_readme_recipe_runs_verbatim_at_tiny_scale(tmp_path, warm_server):
    """Every command of the recipe succeeds; the extracted decoders are native Llama folders that changed in
    training; lm-eval scores the decoder before/after and the memory model."""
    decoder = make_decoder_folder(tmp_path / "Llama-3.2-1B-lookalike", "llama", tied=True, dtype=torch.bfloat16)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    (tasks / "recipe_tiny.yaml").write_text(TASK.format(data=tasks / "docs.jsonl"))
    work = tmp_path / "work"
    work.mkdir()
    warm_server.venv(work)  # the README's .venv/bin/... paths
    runs = work / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "DECODER": str(decoder), "RUNS": str(runs),
           "AUTOENCODER": "autoencoder-tiny", "CHUNK": "8", "DATA": "records", "AE_STEPS": "2", "STEPS": "2",
           "BATCH": "2", "TASKS": "recipe_tiny", "EVAL": f"--device cpu --batch_size 2 --include_path {tasks}",
           "TRAIN_EXTRA": "--train-documents 16 --eval-documents 4 --seed 0"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe_block()], cwd=work, env=env, capture_output=True,
                          text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    original = load_file(decoder / "model.safetensors")
    for name in ("decoder-copy", "decoder-copy-lora"):
        config = json.loads((runs / name / "config.json").read_text())
        assert config["architectures"] == ["LlamaForCausalLM"] and config["rope_parameters"]["rope_type"] == "llama3"
        weights = load_file(runs / name / "model.safetensors")
        assert weights.keys() == original.keys()  # tied: no separate lm_head tensor, as in the original
        assert any(not torch.equal(weights[k].float(), original[k].float()) for k in original)
    assert json.loads((runs / "blank" / "final" / "config.json").read_text())["freeze_encoder"] is True
    for name in ("before", "copy", "copy-lora", "memory-model"):
        assert 0.0 <= lm_eval_accuracy(runs / "lm-eval" / name) <= 1.0
