"""The `vllm.general_plugins` entry point: lets vLLM load a memory-model folder (`vllm serve MODEL_DIR`).

vLLM calls `register()` in every process it starts. It registers `MemoryConfig` with transformers' `AutoConfig`
(no `--trust-remote-code` needed) and the vLLM class of the memory model's decoder for the folder's architecture
`MemoryForCausalLM` (imported lazily, in the processes that build the model).
"""

from __future__ import annotations

MODEL_CLASS = "memory_models.eval.serving.vllm_model:MemoryDecoderForVLLM"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from memory_models.modeling_memory import MemoryConfig

    AutoConfig.register(MemoryConfig.model_type, MemoryConfig, exist_ok=True)
    ModelRegistry.register_model("MemoryForCausalLM", MODEL_CLASS)
