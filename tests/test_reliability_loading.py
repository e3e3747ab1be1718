"""Hostile model folders and result files: a config that does not fit its weights, integer weights, an unsafe pickle,
an index naming shards outside the folder and a malformed tokenizer.json are each one line naming the file (exit 2);
so are a missing or malformed JSON given to `plot`, and a bad TrainingArguments option."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cases_memory import memory_config, word_tokenizer
from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion.loading import load_model
from memory_models.modeling_memory import MemoryForCausalLM
from test_reliability_data import run
from tokenizer_loading import assert_tokenizer_loads_quietly


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny memory model exported with its word tokenizer."""
    folder = tmp_path_factory.mktemp("loading") / "model"
    torch.manual_seed(0)
    export_model(MemoryForCausalLM(memory_config()), folder, word_tokenizer())
    return folder


def edited(saved, tmp_path, edit) -> str:
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    edit(folder)
    return folder


def generate(capsys, folder) -> tuple[int, str]:
    return run(capsys, "generate", "--model", folder, "--prompt", "w5 w6", "--max-new-tokens", "2")


def test_config_that_does_not_fit_the_weights_is_one_line(saved, tmp_path, capsys):
    """config.json edited to enormous sizes is refused before anything is allocated, naming a tensor whose shapes
    differ (never transformers' long load report)."""
    def enormous(folder):
        config = json.loads((folder / "config.json").read_text())
        config["decoder_config"].update(hidden_size=100_000, intermediate_size=400_000)
        (folder / "config.json").write_text(json.dumps(config))

    folder = edited(saved, tmp_path, enormous)
    assert generate(capsys, folder) == (2, f"memory-models generate: error: --model '{folder}': config.json does not "
                                           "fit the checkpoint's tensors: decoder.lm_head.weight is (99, 100000) by "
                                           "config.json but (99, 32) in model.safetensors (and 20 more).")


def test_integer_weights_are_never_cast(saved, tmp_path, capsys):
    """An integer tensor where the model holds floating-point weights is refused by name, not cast silently."""
    def integer_embedding(folder):
        tensors = load_file(str(folder / "model.safetensors"))
        key = "decoder.model.embed_tokens.weight"
        tensors[key] = (tensors[key] * 100).to(torch.int64)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})

    folder = edited(saved, tmp_path, integer_embedding)
    assert generate(capsys, folder) == (2, f"memory-models generate: error: --model '{folder}' holds integer tensors "
                                           "where the model's weights are floating point: "
                                           "['decoder.model.embed_tokens.weight (I64 in model.safetensors)']; refusing "
                                           "to cast them.")


class CreatesFile:
    """Unpickling it creates `path` (code that runs on load)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unsafe_pickle_weights_are_one_line(saved, tmp_path, capsys):
    """A pytorch_model.bin that holds more than tensors is refused in one line (torch's weights_only load fails; it
    is never unpickled with code)."""
    def pickle_weights(folder):
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(CreatesFile(tmp_path / "ran")))

    folder = edited(saved, tmp_path, pickle_weights)
    code, line = generate(capsys, folder)
    assert (code, line) == (2, f"memory-models generate: error: --model '{folder}': its pickle weights file (*.bin) "
                               "holds more than tensors, so torch refuses to load it safely (weights_only=True), and "
                               "memory-models never unpickles code: convert it to safetensors with a tool you trust.")
    assert not (tmp_path / "ran").exists()


def test_index_shards_outside_the_folder_are_refused(saved, tmp_path, capsys):
    """A model.safetensors.index.json naming a shard by a path out of the model folder is refused, even when that
    file exists (it is never read)."""
    outside = tmp_path / "outside.safetensors"
    shutil.copyfile(saved / "model.safetensors", outside)

    def index_outside(folder):
        weight_map = {key: "../outside.safetensors" for key in load_file(str(folder / "model.safetensors"))}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    folder = edited(saved, tmp_path, index_outside)
    assert generate(capsys, folder) == (2, f"memory-models generate: error: --model '{folder}': "
                                           "model.safetensors.index.json names ['../outside.safetensors'] as shards, "
                                           "which are not files of the model folder (shards are plain file names "
                                           "inside it).")
    with pytest.raises(ValueError, match="which are not files of the model folder"):
        load_model(folder)


def test_malformed_tokenizer_json_is_named(saved, tmp_path, capsys):
    """A tokenizer.json that is JSON but not a tokenizer is refused naming the folder and the file."""
    folder = edited(saved, tmp_path, lambda f: (f / "tokenizer.json").write_text('{"version": "1.0", "model": {}}'))
    code, line = generate(capsys, folder)
    assert code == 2 and line.startswith(f"memory-models generate: error: --model '{folder}': its tokenizer.json "
                                         "could not be read (")


@pytest.mark.parametrize("content, message", [
    (None, "'{path}': no such file"),
    ("{bad", "'{path}' is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    ("[1, 2]", "'{path}' holds a JSON list, not the object a training result is"),
], ids=["missing", "malformed", "not_an_object"])
def test_plot_names_a_missing_or_malformed_json(tmp_path, capsys, content, message):
    """plot on a missing, malformed or non-object JSON file: one line naming the file, exit 2, no picture."""
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    code, line = run(capsys, "plot", "training", path, "--output", tmp_path / "plot")
    assert (code, line) == (2, "memory-models plot: error: " + message.format(path=path))
    assert not (tmp_path / "plot.png").exists()


def test_written_folders_give_their_tokenizer_quietly(saved, tmp_path):
    """`AutoTokenizer.from_pretrained(folder)` of an export and of a `memory-models tokenizer` folder: no prompt to
    run code, no code from the folder, no warning (train, demo, reproduce, convert and LoRA folders are checked where
    their tests write them); a folder whose config names an unknown model type is caught by the same check."""
    from memory_models.training.data import tokenizer as tokenizer_command

    assert assert_tokenizer_loads_quietly(saved)("w5 w6")["input_ids"] == word_tokenizer()("w5 w6")["input_ids"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one two three\nfour five six\n" * 20)
    assert tokenizer_command.main(["--corpus", str(corpus), "--vocab-size", "300", "--output",
                                   str(tmp_path / "tokenizer")]) == 0
    assert_tokenizer_loads_quietly(tmp_path / "tokenizer")

    def unknown_type(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "memory_modle", "auto_map": {}}))

    with pytest.raises(AssertionError, match="memory_modle"):
        assert_tokenizer_loads_quietly(edited(saved, tmp_path, unknown_type))


def transformers_warnings(call) -> list[str]:
    """The messages transformers logged during `call()` (wherever its output goes); `call`'s error is kept."""
    import logging

    messages, handler = [], logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        call()
    except RuntimeError as error:
        messages.append(f"raised: {error}")
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    return messages


def test_a_deliberately_dropped_encoder_loads_without_transformers_report(saved):
    """The ablated model (`--no-memory`) leaves the checkpoint's encoder unused on purpose: no alarming table, and
    every decoder weight is the saved one."""
    from memory_models.eval.harness.runner import load_model as load_for_eval

    loaded = []
    messages = transformers_warnings(lambda: loaded.append(load_for_eval(str(saved), no_memory=True)))
    assert not [m for m in messages if "LOAD REPORT" in m]
    ablated, full = loaded[0], load_model(saved)
    assert ablated.config.no_memory and len(ablated.state_dict()) < len(full.state_dict())  # encoder left unused
    for name, tensor in ablated.state_dict().items():
        torch.testing.assert_close(tensor, full.state_dict()[name], rtol=0, atol=0)


def test_a_held_load_report_is_dropped_on_success_and_logged_on_failure():
    """transformers' report is held during a checked load; when the load fails, the report comes after all (an
    error such as "look at the above report" must not point at nothing)."""
    import logging

    from memory_models.conversion.loading import held_load_report

    logger = logging.getLogger("transformers.modeling_utils")

    def load(fail):
        with held_load_report():
            logger.warning("MemoryForCausalLM LOAD REPORT from: here")
            logger.warning("another warning")
            if fail:
                raise RuntimeError("look at the above report")

    assert transformers_warnings(lambda: load(fail=False)) == ["another warning"]
    assert transformers_warnings(lambda: load(fail=True)) == [
        "another warning", "MemoryForCausalLM LOAD REPORT from: here", "raised: look at the above report"]
    assert not logger.filters  # nothing left behind
