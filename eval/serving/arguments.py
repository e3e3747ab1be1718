"""Command-line options of `memory-models serve` (standard library only: `--help` answers without torch)."""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import add_trust_remote_code

DEFAULT_PORT = 8000


def serve_parser() -> argparse.ArgumentParser:
    """The options of `memory-models serve`; options it does not know go to vLLM unchanged."""
    parser = argparse.ArgumentParser(
        prog="memory-models serve", usage="memory-models serve MODEL [options] [vLLM options]",
        description="Serve a memory model's decoder with vLLM (an OpenAI-compatible server), after checking that "
        "vLLM gives the tokens `memory-models generate` gives; ask it with `memory-models generate --server URL`. "
        "Options this command does not know (--enforce-eager, --dtype, --max-num-seqs, ...) go to vLLM.")
    parser.add_argument("model", help="memory model folder (the folder vLLM loads; its encoder stays unused there)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--vllm-python", default=None,
                        help="the Python of the environment that has vLLM and this package's plugin (default: "
                        "$MEMORY_MODELS_VLLM_PYTHON, else .venv-vllm/bin/python here or in the repository, else "
                        "this Python if it has vLLM)")
    parser.add_argument("--print-command", action="store_true",
                        help="print the vLLM command line (and its environment) instead of running it")
    add_trust_remote_code(parser)
    return parser
