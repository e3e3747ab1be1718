"""`memory-models demo --quick`: the memory model and its control, the read-back passage, the reload without our
packages and generation."""

import json

import pytest

from memory_models.eval.experiments import demo
from memory_models.eval.experiments.arguments import demo_parser
from memory_models.training import train
from tokenizer_loading import assert_tokenizer_loads_quietly


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("demo")
    args = demo_parser().parse_args(["--quick", "--output-dir", str(output_dir)])
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
