"""What vLLM can serve of a memory model with the tokens `memory-models generate` gives, in one place.

Read by the vLLM side (the plugin's model class refuses a model before loading any weight), by `memory-models serve`
(before starting vLLM) and by the client (before sending anything). Standard library only: it is imported inside
the vLLM environment as well as ours.

A request is one decoder chunk: its memory slots and its tokens, as prompt embeddings that vLLM numbers
`0, 1, 2, ...`, and vLLM has no attention mask over prompt positions. So:
- fixed layout: all `S` slots are sent (memories and filler), the tokens get positions `S + i`, as in training;
- variable layout: only the slots that hold a memory are sent (its masked slots are never attended to), and its
  tokens get positions `c + i` (`c` memories), as in training;
- the `masked` filler (fixed layout) cannot be served: its empty slots would have to be left out of attention while
  the tokens keep positions `S + i`; sending them changes what the tokens attend to, leaving them out moves the
  tokens' rotary positions to `c + i`;
- the decoder must be a class whose vLLM implementation treats input embeddings exactly as transformers does (Llama:
  embeddings in, no scaling); a masked-mixer decoder has no vLLM class at all.
"""

from __future__ import annotations

# Decoder types whose vLLM class reads prompt embeddings as transformers does, verified token for token
# (tests/test_serving.py): a registry by type; others are refused, not guessed.
SERVABLE_DECODERS = {"llama": "LlamaForCausalLM"}
SERVED_NAME_PREFIX = "memory-model-"  # `memory-models serve` names it memory-model-d<width>-<fingerprint>
POSITION_TABLE = "decoder_position_embeddings"  # the learned decoder position table (MemoryConfig.position_embedding)


def declares(config, name: str, default: bool) -> bool:
    """A capability that the config's class declares (`modeling_memory.capabilities`), read by attribute: this
    module imports nothing of the package, as the vLLM environment needs."""
    return bool(getattr(getattr(type(config), "capabilities", None), name, default))


def serving_refusal(config) -> str | None:
    """Why vLLM cannot serve the memory model of `config` token for token, or `None` when it can."""
    decoder = getattr(config, "decoder_config", None)
    if not declares(config, "takes_memory_embeds", False) or decoder is None:
        return f"it is a {getattr(config, 'model_type', None)!r} model, not a memory model (model_type 'memory_model')"
    if SERVABLE_DECODERS.get(decoder.model_type) is None:
        kind = "is not verified to read prompt embeddings in vLLM as it does in transformers"
        if not declares(decoder, "has_attention", True):
            kind = "has no vLLM class"
        served = ", ".join(SERVABLE_DECODERS)
        return f"its decoder is a {decoder.model_type!r}, which {kind} (served decoders: {served})"
    if config.filler == "masked" and config.memory_layout == "fixed":
        return ("filler='masked' leaves the empty slots out of attention while the tokens keep positions S + i; vLLM "
                "has no attention mask over prompt positions, and leaving the slots out would move the tokens' "
                "rotary positions (use a model trained with filler 'ones', 'zeros' or 'learned')")
    return None


def check_servable(config) -> None:
    """Raise a `ValueError` naming why vLLM cannot serve this memory model token for token."""
    reason = serving_refusal(config)
    if reason is not None:
        raise ValueError(f"vLLM cannot serve this memory model with the tokens `memory-models generate` gives: "
                         f"{reason}")


def uses_position_table(config) -> bool:
    """True if the decoder adds a learned position row to its input embeddings (served by the plugin)."""
    return config.position_embedding == "learned"


def max_model_len(config) -> int:
    """The longest request: `S` slots and a chunk's `L` tokens, plus the token the last of them predicts (the first
    of the next chunk, never fed to this request)."""
    return config.num_memory_slots + config.chunk_size + 1
