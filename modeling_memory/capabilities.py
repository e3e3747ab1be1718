"""What a model family can do, declared once on its config class and read everywhere else.

Code that must treat families differently (training, evaluation, conversion, the model classes themselves) asks
[`capabilities`] instead of comparing `model_type` strings: a new family declares its answers on its config class
(`capabilities = Capabilities(...)`) and every command follows. A config that declares nothing, such as any native
transformers model (`llama`, `qwen3`, ...), gets the defaults: a native attention model without a memory.
"""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Capabilities:
    """The questions code outside a family asks about it.

    Args:
        is_autoencoder: reconstructs its input from one embedding (no next-token head: `AutoModel`, not
            `AutoModelForCausalLM`); trained by the autoencoder objectives, measured by retention, not lm-eval.
        reads_memory: a causal LM that carries a memory of earlier context (the memory model, the RMT): the
            objectives that need a memory train it.
        has_encoder: an `encoder` sub-module turns text into embeddings (the autoencoder, the memory model).
        takes_memory_embeds: encodes chunks into memories and reads given ones (`encode()`, `memory_embeds=`,
            a memory window, `no_memory`): memory banks, the read-back, decoder extraction, the `--no-memory`
            ablation.
        has_attention: attention layers: an attention mask and position ids are honoured, attention weights can be
            returned and generation keeps a KV cache (a masked mixer has none of these).
        native: transformers ships the class (no custom code to run, a decoder can be exported on its own).
    """

    is_autoencoder: bool = False
    reads_memory: bool = False
    has_encoder: bool = False
    takes_memory_embeds: bool = False
    has_attention: bool = True
    native: bool = True


def capabilities(config_or_model) -> Capabilities:
    """The capabilities declared by the config class of `config_or_model` (a config, or a model with `.config`);
    the defaults for a class that declares none. Read by field name, so that a config class loaded from a saved
    folder's own code (another copy of this module) answers the same."""
    config = getattr(config_or_model, "config", config_or_model)
    declared = getattr(type(config), "capabilities", None)
    if declared is None:
        return Capabilities()
    return Capabilities(**{field.name: getattr(declared, field.name, field.default) for field in fields(Capabilities)})
