"""`memory-models demo --quick`: the autoencoder, the memory model over its frozen encoder and the control, the
read-back passage, the reload without our packages and generation."""

import json

import pytest
import torch
from safetensors.torch import load_file

from memory_models.eval.experiments import demo
from memory_models.eval.experiments.arguments import DEMO_FAMILIES, demo_parser
from memory_models.training import train
from tokenizer_loading import assert_tokenizer_loads_quietly


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("demo")
    args = demo_parser().parse_args(["--quick", "--jobs", "2", "--output-dir", str(output_dir)])
    return args, output_dir, demo.run(args)


def test_demo_quick(quick, capsys):
    """Both models report blank-copy, copy and CLM accuracy; the memory model's exported checkpoint (memories on,
    the control's off) reloads from its shipped code and generates."""
    _, output_dir, result = quick
    for name in ("memory", "no-memory control"):
        final = result["summaries"][name]
        for key in ("eval_blank_copy_accuracy", "eval_copy_accuracy", "eval_clm_accuracy"):
            assert 0.0 <= final[key] <= 1.0
    assert "| memory |" in result["table"] and "| no-memory control |" in result["table"]
    assert result["generation"]["model_module"].startswith("transformers_modules")
    assert result["generation"]["model_class"] == "MemoryForCausalLM"
    assert isinstance(result["generation"]["completion"], str)
    saved = json.loads((output_dir / "demo.json").read_text())
    assert saved["table"] == result["table"] and saved["passage"] == result["passage"]
    assert_tokenizer_loads_quietly(output_dir / "memory" / "final")
    config = json.loads((output_dir / "memory" / "final" / "config.json").read_text())
    assert "AutoModelForCausalLM" in config["auto_map"] and config["no_memory"] is False
    control = json.loads((output_dir / "control" / "final" / "config.json").read_text())
    assert control["no_memory"] is True


def test_the_memory_model_reads_the_autoencoders_encoder_frozen(quick):
    """The demo's memory transformer holds its autoencoder's trained encoder, unchanged by blank copy (frozen); its
    decoder is a Llama with learned positions; the control has no encoder."""
    args, output_dir, result = quick
    assert result["family"] == "memory-transformer" and "eval_autoencode_accuracy" in result["autoencoder"]
    autoencoder = load_file(output_dir / "autoencoder" / "final" / "model.safetensors")
    memory = load_file(output_dir / "memory" / "final" / "model.safetensors")
    encoder = {name: tensor for name, tensor in memory.items() if name.startswith("encoder.")}
    assert encoder and set(encoder) <= set(autoencoder)
    for name, tensor in encoder.items():
        torch.testing.assert_close(tensor, autoencoder[name], rtol=0, atol=0, msg=name)
    config = json.loads((output_dir / "memory" / "final" / "config.json").read_text())
    assert config["freeze_encoder"] is True and config["position_embedding"] == "learned"
    assert config["encoder_config"]["model_type"] == config["decoder_config"]["model_type"] == "llama"
    assert not any(name.startswith("encoder.") for name in load_file(output_dir / "control" / "final" /
                                                                       "model.safetensors"))


def test_the_memory_mixer_demo_builds_mixers_over_the_chunk_and_the_window(quick):
    """`--family memory-mixer`: mixer encoder (kernel = chunk) and decoder (kernel = slots + chunk), its own budget."""
    quick_args, output_dir, _ = quick
    tokenizer = train.load_tokenizer(str(output_dir / f"tokenizer-{quick_args.vocab_size}"))
    assert tuple(demo.RECIPES) == DEMO_FAMILIES  # a budget for every family the option offers
    args = demo.with_recipe(demo_parser().parse_args(["--family", "memory-mixer"]))
    assert (args.autoencoder_steps, args.steps, args.learning_rate) == (1000, 1000, 6e-3)
    config = demo.memory_config(args, tokenizer, no_memory=False)
    assert config.encoder_config.model_type == config.decoder_config.model_type == "masked_mixer"
    assert (config.encoder_config.kernel_size, config.decoder_config.kernel_size) == (8, 12)


def test_the_read_back_passage_is_the_held_out_first_half(quick):
    """The passage's targets are the held-out row's first half after the copy delimiter (the tokens the blanks
    stand for), and each model's count of right tokens is its greedy predictions' agreement with them."""
    args, output_dir, result = quick
    tokenizer = train.load_tokenizer(str(output_dir / f"tokenizer-{args.vocab_size}"))
    passage = demo.held_out_passage(args, tokenizer)
    half = args.chunk_size * args.memory_slots // 2
    targets, predicted = demo.read_back(output_dir / "memory" / "final", passage)
    assert targets == passage[2:half].tolist()  # the 3-token delimiter hides the first two targets
    assert len(predicted) == len(targets)
    assert result["passage"]["memory"]["tokens_right"] == sum(t == p for t, p in zip(targets, predicted))
    assert result["passage"]["held-out passage"]["text"] == tokenizer.decode(targets)
    # The reloaded model's default prompt: the passage's first half, then the copy delimiter (it writes it back).
    assert result["prompt"] == tokenizer.decode(passage[:half]) + "<|reserved_0|>" * 3


def test_bad_demo_sizes_are_refused():
    """An odd number of memory slots (blank copy needs two halves) is a ValueError naming the values."""
    args = demo_parser().parse_args(["--quick", "--memory-slots", "3"])
    with pytest.raises(ValueError, match="even --memory-slots .* got --memory-slots 3 --chunk-size 8"):
        demo.check_args(args)


def test_the_control_trained_beside_the_autoencoder_equals_one_trained_in_this_process(quick, tmp_path):
    """With `--jobs 2` (the default on 2 cores) the control trains in a second process, its output in
    `control.log`; the model it saves is the one this process trains from the same arguments on one thread."""
    args, output_dir, result = quick
    assert result["settings"]["jobs"] == 2 and "finished 2 steps" in (output_dir / "control.log").read_text()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = demo.with_recipe(demo.replace_args(args, jobs=1))
        summary = demo.train_memory_model(args, tmp_path, output_dir / "tokenizer-512", demo.CONTROL)
    finally:
        torch.set_num_threads(threads)
    assert summary["steps"] == 2
    for key in ("eval_blank_copy_loss", "eval_copy_loss", "eval_clm_loss"):
        torch.testing.assert_close(summary["final"][key], result["summaries"]["no-memory control"][key], msg=key)
    here = load_file(tmp_path / "control" / "final" / "model.safetensors")
    there = load_file(output_dir / "control" / "final" / "model.safetensors")
    assert set(here) == set(there)
    for name in here:
        torch.testing.assert_close(here[name], there[name], msg=name)
