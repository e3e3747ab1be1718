"""Repository hygiene: the README's commands are what CI runs, and the CLI lists its commands."""

import pathlib
import re

from eval.cli import COMMANDS, main

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


def test_cli_presets_lists_presets(capsys):
    """`memory-models presets` prints every preset with its model type and context."""
    from configuration import list_presets

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_presets())
