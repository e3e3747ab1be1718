"""The `memory-models` command: one entry point, one sub-command per job.

    memory-models demo                      # the main job on the embedded default corpus
    memory-models train --preset ... --objective combined ...
    memory-models retention --encoder PATH_OR_HUB_ID --context 16 64 ...
    memory-models export --model DIR --output hub/name [--push-to-hub org/name]
    memory-models eval --model DIR [--model DIR2 ...] --tasks mmlu,longbench,swde [--no-memory] [--limit N]
    memory-models benchmark memory [--quick]
    memory-models X --help                  # every command's options

How a command is wired: its options live in a light `arguments.py` beside its code (standard library only), so
that `--help` and a mistyped option answer at once; its implementation module is imported only after the
options parsed, and its `main(argv) -> int` runs it, or, where the module has one, its `run_args(args) -> int` on
the options the CLI already parsed (argv is then parsed once on the way to the command). An error prints one line, `memory-models X: error: ...`,
and exits 2 (a bad input) or 1 (anything else: an output folder in use by another process, a full disk, ...);
an interrupt prints one line too (`train` names the step and how to resume) and exits 130; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memory_models.conversion.arguments import convert_parser, export_parser
from memory_models.conversion.safe_io import FolderInUseError
from memory_models.eval.arguments import retention_parser
from memory_models.eval.banks.arguments import encode_parser, generate_parser, read_back_parser, verify_parser
from memory_models.eval.benchmarks.arguments import benchmark_parser
from memory_models.eval.experiments.arguments import (
    demo_parser, launcher_check_parser, readback_parser, reproduce_parser,
)
from memory_models.eval.harness.arguments import compare_parser, lookalike_parser
from memory_models.eval.serving.arguments import serve_parser
from memory_models.training.allocator import keep_freed_memory
from memory_models.training.arguments import plot_parser, tokenizer_parser, train_parser


def presets_parser() -> argparse.ArgumentParser:
    """`memory-models presets` takes no options."""
    return argparse.ArgumentParser(prog="memory-models presets", description="List the named model configurations.")


@dataclass(frozen=True)
class Command:
    """A sub-command: its light parser, the module whose `main(argv) -> int` runs it (under `memory_models`), and a
    one-line summary."""

    parser: Callable[[], argparse.ArgumentParser]
    module: str
    summary: str
    known_args_only: bool = False  # `train` / `serve` pass unknown options on to TrainingArguments / vLLM


COMMANDS = {
    "demo": Command(demo_parser, "eval.experiments.demo",
                    "an autoencoder, then a memory transformer over its frozen encoder and its control on the "
                    "embedded corpus; export, reload, generate"),
    "train": Command(train_parser, "training.train", "train any preset with any objective on the HF Trainer",
                     known_args_only=True),
    "tokenizer": Command(tokenizer_parser, "training.data.tokenizer", "train a byte-level BPE tokenizer on a corpus"),
    "retention": Command(retention_parser, "eval.information_retention",
                         "measure how much of its input a model's embedding retains"),
    "export": Command(export_parser, "conversion.export_to_hub", "write a Hub-ready folder (and optionally push it)"),
    "convert": Command(convert_parser, "conversion.pretrained_decoder",
                       "make a pretrained causal LM (Llama 3.2, Qwen, ...) a memory model's decoder"),
    "eval": Command(compare_parser, "eval.harness.compare",
                    "lm-eval tasks (mmlu, longbench, swde, ...) on saved models, side by side"),
    "lookalike": Command(lookalike_parser, "eval.harness.lookalike",
                         "write offline look-alikes of the mmlu, longbench and swde lm-eval tasks"),
    "encode": Command(encode_parser, "eval.banks.encode",
                      "encode a corpus into a memory bank (one process, or many under torchrun / accelerate)"),
    "verify": Command(verify_parser, "eval.banks.bank", "check every shard and the index of a memory bank"),
    "generate": Command(generate_parser, "eval.banks.generate",
                        "continue a prompt, optionally from a document in a memory bank"),
    "serve": Command(serve_parser, "eval.serving.serve",
                     "serve a memory model's decoder with vLLM (memories arrive as prompt embeddings)",
                     known_args_only=True),
    "bank-retention": Command(read_back_parser, "eval.banks.read_back",
                              "how much of its text a memory bank can read back (blank copy)"),
    "benchmark": Command(benchmark_parser, "eval.benchmarks.cli", "speed and memory benchmarks (table + JSON)"),
    "plot": Command(plot_parser, "training.plot", "PNG/SVG plots of training, retention and benchmark JSON"),
    "reproduce": Command(reproduce_parser, "eval.experiments.reproduce",
                         "the paper's Tables 1, 3, 4 and Fig. 4(d) on held-out data, over several seeds"),
    "readback": Command(readback_parser, "eval.experiments.readback",
                        "how fast a decoder learns to read oracle memories (the blank-copy diagnostic)"),
    "launcher-check": Command(launcher_check_parser, "eval.experiments.launcher_check",
                              "the same run under every launcher gives the same numbers"),
    "presets": Command(presets_parser, "configuration", "list the named model configurations"),
}


def usage() -> str:
    """The top-level help: every command with its summary, in a column as wide as the longest name."""
    width = max(map(len, COMMANDS))
    lines = ["usage: memory-models [--debug] COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines + ["", "`memory-models COMMAND --help` describes each command's options; --debug shows "
                              "the traceback of an error."])


def error_line(prog: str, error: BaseException) -> tuple[str, int]:
    """The one line (and exit code) an error prints: 2 for a bad input (`ValueError`), 1 for anything else; 130 for
    an interrupt (its message, when it has one: "interrupted at step N: rerun with --resume ...")."""
    if isinstance(error, KeyboardInterrupt):
        return f"{prog}: {str(error) or 'interrupted'}", 130
    if isinstance(error, ValueError):
        return f"{prog}: error: {error}", 2
    if isinstance(error, FolderInUseError):
        return f"{prog}: error: {error}", 1
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"{prog}: error: no space left on {error.filename or 'the output folder'}", 1
    return f"{prog}: error: {type(error).__name__}: {error} (rerun with --debug for the traceback)", 1


def run_command(name: str, argv: Sequence[str], debug: bool = False) -> int:
    """Parse `argv` with `name`'s light parser (usage errors exit 2 here), then run its implementation."""
    command = COMMANDS[name]
    parser = command.parser()
    parse = parser.parse_known_args if command.known_args_only else parser.parse_args
    args = parse(list(argv))  # --help, a missing or mistyped option: answered before anything heavy is imported
    prog = f"memory-models {name}"
    try:
        module = importlib.import_module(f"memory_models.{command.module}")  # deferred: the parsers load no torch
        run_args = None if command.known_args_only else getattr(module, "run_args", None)
        return int((run_args(args) if run_args else module.main(list(argv))) or 0)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        line, code = error_line(prog, interrupt)
        print(f"\n{line}", file=sys.stderr)
        return code
    except BrokenPipeError:  # the reader went away (`memory-models presets | head`): nothing left to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's exit flush quiet
        return 0
    except Exception as error:  # noqa: BLE001 - every error of a command becomes one line unless --debug
        if debug:
            raise
        line, code = error_line(prog, error)
        print(line, file=sys.stderr)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """`memory-models [--debug] COMMAND [options]`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]
    if debug:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"memory-models: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    if "--debug" in rest:  # ours wherever it stands (TrainingArguments' own --debug is not reachable from here)
        debug, rest = True, [arg for arg in rest if arg != "--debug"]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()  # CPU training steps reuse their memory instead of faulting it in again (identical numbers)
    return run_command(name, rest, debug)


if __name__ == "__main__":
    sys.exit(main())
