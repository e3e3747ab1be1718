"""`memory-models demo --quick`: trains the memory model and its control, reloads without our packages, generates."""

import json

from memory_models.eval.experiments.arguments import demo_parser
from memory_models.eval.experiments.demo import run
from tokenizer_loading import assert_tokenizer_loads_quietly


def test_demo_quick(tmp_path, capsys):
    """Both models report CLM and copy accuracy; the exported checkpoint reloads from its shipped code."""
    result = run(demo_parser().parse_args(["--quick", "--output-dir", str(tmp_path / "demo")]))
    out = capsys.readouterr().out
    assert "| memory |" in out and "| no-memory control |" in out and "completion:" in out
    for name in ("memory", "no-memory control"):
        final = result["summaries"][name]
        assert 0.0 <= final["eval_copy_accuracy"] <= 1.0 and 0.0 <= final["eval_clm_accuracy"] <= 1.0
    assert result["generation"]["model_module"].startswith("transformers_modules")
    assert result["generation"]["model_class"] == "MemoryForCausalLM"
    assert isinstance(result["generation"]["completion"], str)
    saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert saved["table"] == result["table"]
    assert_tokenizer_loads_quietly(tmp_path / "demo" / "memory" / "final")
    config = json.loads((tmp_path / "demo" / "memory" / "final" / "config.json").read_text())
    assert "AutoModelForCausalLM" in config["auto_map"] and config["no_memory"] is False
