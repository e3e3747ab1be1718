"""Repository hygiene: the README's commands are what CI runs, and the CLI lists its commands."""

import pathlib
import re
import subprocess
import sys

import pytest

from memory_models.eval.cli import COMMANDS, main
from import_graph import bare_imports, cycles, edges, model_type_tests, upward_edges

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run's command line is the README's second set-up command, character for character."""
    demo, tests = readme_commands()
    ci_lines = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert ci_lines == [tests]
    assert re.search(r"\.venv/bin/memory-models demo( --[\w-]+ \S+)*$", demo), demo
    assert "-c constraints.txt" in demo and "-c constraints.txt" in tests


def test_constraints_pin_the_cpu_torch():
    """constraints.txt pins torch (an unpinned install would pull multi-GB CUDA wheels)."""
    pins = dict(l.split("==") for l in (ROOT / "constraints.txt").read_text().splitlines() if "==" in l)
    assert pins["torch"] == "2.13.0" and "transformers" in pins


def test_cli_help_lists_every_command(capsys):
    """`memory-models --help` names every sub-command; an unknown one exits with status 2."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["no-such-command"]) == 2
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    widths = {line.index(line.split(maxsplit=1)[1], 2 + len(line.split()[0])) for line in rows}
    assert len(widths) == 1, "the summaries start in one column, after the longest command name"


def test_every_command_parses_without_torch():
    """`memory-models X --help` imports nothing heavy: in a fresh interpreter, building every command's parser
    loads neither torch nor transformers (so --help answers at once)."""
    script = ("import sys; from memory_models.eval.cli import COMMANDS; [c.parser() for c in COMMANDS.values()]; "
              "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'lm_eval') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_errors_print_one_line_and_exit_2(tmp_path, capsys):
    """A bad input prints `memory-models X: error: ...` on one line and exits 2; --debug raises it instead."""
    argv = ["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memory-models export: error: --model") and "\n" not in err and "Traceback" not in err
    with pytest.raises(ValueError, match="no such folder"):
        main(["--debug", *argv])


def test_generate_parses_its_options_once(monkeypatch):
    """`memory-models generate` hands the options the CLI parsed to the command (`run_args`) instead of parsing argv a
    second time on the way to `generate`."""
    import memory_models.eval.banks.generate as generate

    seen = []
    monkeypatch.setattr(generate, "generate_parser", lambda: pytest.fail("generate parsed argv a second time"))
    monkeypatch.setattr(generate, "run_args", lambda args: seen.append(args) or 0)
    assert main(["generate", "--model", "some/dir", "--prompt", "Question:"]) == 0
    assert [(args.model, args.prompt) for args in seen] == [("some/dir", "Question:")]


def test_cli_presets_lists_presets(capsys):
    """`memory-models presets` prints every preset with its model type and context."""
    from memory_models.configuration import list_presets

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_presets())


def test_the_suite_runs_offline():
    """tests/conftest.py sets the offline switches before any Hugging Face library reads them."""
    import datasets
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert datasets.config.HF_DATASETS_OFFLINE is True


def test_layers_import_downwards_through_one_name():
    """The import graph has no cycle and no upward edge, and every import of our code (package and tests) goes
    through `memory_models`, never a folder's bare name (`tests/import_graph.py`)."""
    graph = edges()
    assert ("eval", "training") in graph and ("conversion", "modeling_memory") in graph  # the parser sees imports
    assert upward_edges(graph) == [] and cycles(graph) == []
    assert bare_imports() == []


def test_the_import_checks_catch_a_bare_and_an_upward_import(tmp_path):
    """The graph's checks flag a bare top-level import and an upward one (a copy of two layers, one bad line each)."""
    for layer in ("modeling_memory", "configuration", "conversion", "training", "eval", "tests"):
        (tmp_path / layer).mkdir()
    (tmp_path / "conversion" / "bad.py").write_text("from configuration import presets\n")
    (tmp_path / "configuration" / "up.py").write_text("from memory_models.eval import cli\n")
    assert bare_imports(tmp_path) == ["conversion/bad.py:1: import configuration (write memory_models.configuration)"]
    assert upward_edges(edges(tmp_path)) == ["configuration -> eval: configuration/up.py:1"]


def test_no_model_type_string_tests_outside_the_model_folder(tmp_path):
    """Outside `modeling_memory/`, code asks a family's declared capabilities, never compares `model_type` with a
    string: none today, and the check flags each new form (a literal, a tuple, a module constant), not a lookup."""
    assert model_type_tests() == []
    for layer in ("modeling_memory", "configuration", "conversion", "training", "eval"):
        (tmp_path / layer).mkdir()
    (tmp_path / "modeling_memory" / "ok.py").write_text("x = config.model_type == 'llama'\n")
    (tmp_path / "eval" / "bad.py").write_text(
        "KINDS = ('memory_model', 'recurrent_memory')\n"
        "a = config.model_type == 'memory_autoencoder'\n"
        "b = model.config.model_type not in KINDS\n"
        "c = 'masked_mixer' != model_type\n"
        "d = config.model_type in CONFIG_MAPPING\n")
    assert [line.split(":")[1] for line in model_type_tests(tmp_path)] == ["2", "3", "4"]
