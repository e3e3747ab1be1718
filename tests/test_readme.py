"""The shell commands of the README and of every `docs/` page run as written after the set-up command.

Every ```bash block of those pages is checked statically: no `...` placeholders, programs called through `.venv/bin/`, and
each example (block) writes into its own output folders (commands of one block may reuse them, e.g. `--resume`).
The blocks marked `<!-- readme-test: quick -->` (short first tries) are run with bash in an empty temporary folder
that holds only a `.venv` standing in for this environment (its `memory-models` starts warm: tests/warm_venv.py);
blocks without the mark (long runs, Hub or GPU ones) are not run.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK_MARK = "<!-- readme-test: quick -->"
PROGRAMS = ("memory-models", "python", "python3", "torchrun", "accelerate", "pip", "pytest", "lm_eval")
SETUP = "python3 -m venv .venv"  # the set-up command creates .venv, so it cannot use it
OUTPUT_OPTIONS = ("--output-dir", "--output")


def shell_blocks(text: str) -> list[tuple[bool, str]]:
    """`(quick, body)` of every ```bash block; `quick` when the QUICK_MARK line precedes the block."""
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((before.strip() == QUICK_MARK, match.group(1)))
    return blocks


def commands(block: str) -> list[str]:
    """The block's command lines, continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"[ \t]*\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def words(command: str) -> list[str]:
    """The words of a command without its leading `VAR=value` assignments."""
    parts = shlex.split(command, comments=True)
    while parts and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", parts[0]):
        parts.pop(0)
    return parts


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# (page, quick, body) of every shell block of every page
BLOCKS = [(page.relative_to(ROOT).as_posix(), quick, body) for page in PAGES
          for quick, body in shell_blocks(page.read_text(encoding="utf-8"))]


def test_readme_and_docs_shell_blocks_run_as_written():
    """No placeholders, `.venv/bin/` programs (after the set-up command), one output folder per example, over the
    README and every docs/ page together."""
    assert {page for page, _, _ in BLOCKS} >= {"README.md", "docs/training.md", "docs/reproduce.md"}
    assert any(quick for _, quick, _ in BLOCKS)
    problems, outputs = [], {}
    for index, (page, _, block) in enumerate(BLOCKS):
        for command in commands(block):
            if "..." in command.split("#")[0] or re.search(r"\[--[a-z]", command):
                problems.append(f"{page}: placeholder in: {command}")
            for part in command.split("&&"):
                part = part.strip()
                program = (words(part) or [""])[0]
                if part.startswith(SETUP) or program.startswith(".venv/bin/"):
                    continue
                if program in PROGRAMS:
                    problems.append(f"{page}: {program!r} without .venv/bin/ in: {command}")
            parts = words(command)
            for option, value in zip(parts, parts[1:]):
                if option in OUTPUT_OPTIONS and outputs.setdefault(value, (index, command))[0] != index:
                    problems.append(f"{option} {value} used by two examples: {outputs[value][1]!r} and {command!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("index", [i for i, (_, quick, _) in enumerate(BLOCKS) if quick],
                         ids=lambda i: f"{BLOCKS[i][0]}-{i}")
def test_quick_blocks_run_in_an_empty_folder(tmp_path, index, warm_server):
    """A marked block runs with bash in an empty folder (only the `.venv` stand-in) and creates every output it
    names."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "memory-models").exists():
        pytest.skip(f"{venv} has no memory-models script (run the tests with the set-up .venv's python)")
    warm_server.venv(tmp_path)
    block = BLOCKS[index][2]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": ""}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{block}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    for command in commands(block):
        parts = words(command)
        for option, value in zip(parts, parts[1:]):
            if option in OUTPUT_OPTIONS:
                assert (tmp_path / value).exists(), f"{command} did not create {value}"
    assert list(tmp_path.iterdir()) != [tmp_path / ".venv"]


def test_warm_programs_keep_streams_cwd_and_exit_status(tmp_path, warm_server):
    """The stand-in `.venv/bin/memory-models` behaves as the real one: its output on the caller's streams, paths
    relative to the caller's folder, the program's exit status (0 for help, 2 for a bad input)."""
    warm_server.venv(tmp_path)
    (tmp_path / "here").mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    helped = subprocess.run(["../.venv/bin/memory-models", "--help"], cwd=tmp_path / "here", env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: memory-models"), helped
    (tmp_path / "here" / "bank").mkdir()
    (tmp_path / "here" / "bank" / "memory_bank.json").write_text("{}")  # found only from the caller's folder
    refused = subprocess.run(["../.venv/bin/memory-models", "verify", "bank"], cwd=tmp_path / "here", env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert refused.stderr.splitlines() == [
        "memory-models verify: error: bank/memory_bank.json has format None; expected 'memory-models/memory-bank'"
    ], refused.stderr


def test_shell_block_parser():
    """The parser finds marked blocks, joins continuation lines and drops comments and VAR=value prefixes."""
    text = f"x\n{QUICK_MARK}\n```bash\n# c\na --b \\\n    c\n```\n\n```bash\nA=1 .venv/bin/python -m x\n```\n"
    blocks = shell_blocks(text)
    assert [quick for quick, _ in blocks] == [True, False]
    assert commands(blocks[0][1]) == ["a --b c"]
    assert words(commands(blocks[1][1])[0]) == [".venv/bin/python", "-m", "x"]


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in text.splitlines() if line.startswith("#")}


def test_readme_fits_a_screen_and_every_link_resolves():
    """The README stays short (<= 200 lines) and lists every docs/ page; every relative link of the README and the
    docs pages names a file that exists and, with `#anchor`, a heading of that file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert all(f"(docs/{page.name})" in readme for page in PAGES[1:])
    broken = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and anchor not in anchors(linked.read_text(encoding="utf-8"))):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
