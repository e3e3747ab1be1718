"""`memory-models export --decoder-only`: the decoder of a memory model as a standalone model of its native class.

    memory-models export --model runs/copy/final --decoder-only --output runs/copy/decoder

The folder holds e.g. a `LlamaForCausalLM` (what the paper evaluates in Tables S1-S2): it
loads without `trust_remote_code`, and its logits equal `model.decoder`'s bit for bit, i.e. the decoder with no
memories. This is the model that Tables S1/S2 evaluate with lm-eval before and after memory training. A memory
model with `position_embedding="learned"` adds a learned embedding of each chunk position to the decoder's input; a
native class has no place for it, so the extracted decoder reads tokens without it (said in a warning and in the
model card), as it reads them without memories.
"""

from __future__ import annotations

import logging

import transformers

logger = logging.getLogger(__name__)

NON_NATIVE = ("masked_mixer",)  # our own classes: no native class to export as


def extract_decoder(model):
    """`model.decoder` of a memory model, checked to be a native transformers causal LM."""
    config = getattr(model, "config", None)
    decoder_config = getattr(config, "decoder_config", None)
    decoder = getattr(model, "decoder", None)
    if decoder_config is None or decoder is None or config.model_type != "memory_model":
        raise ValueError(f"--decoder-only needs a memory model, got {type(model).__name__} "
                         f"(model_type {getattr(config, 'model_type', None)!r})")
    if decoder_config.model_type in NON_NATIVE:
        raise ValueError(f"the decoder is a {decoder_config.model_type!r}, which has no native transformers class: "
                         "export the whole memory model instead")
    if dropped_positions(model):
        logger.warning("the memory model adds learned chunk positions to the decoder's input "
                       "(position_embedding='learned'); the extracted decoder reads tokens without them")
    return decoder


def dropped_positions(model) -> bool:
    """True if `model` adds a (trained, non-zero) learned position embedding that its extracted decoder leaves out."""
    table = getattr(model, "decoder_position_embeddings", None)
    return table is not None and bool(table.weight.detach().abs().max() > 0)


def decoder_model_card(decoder, origin: str, positions_dropped: bool = False) -> str:
    """A model card naming the class, the size and the memory model the decoder was extracted from."""
    n_params = sum(p.numel() for p in decoder.parameters())
    positions = ("\nThe memory model also added a learned embedding of each chunk position to the decoder's input "
                 "(`position_embedding: learned`);\nthis native class has no place for it, so the decoder here reads "
                 "tokens without it.\n") if positions_dropped else ""
    return f"""---
library_name: transformers
tags: [memory-models]
---
# {type(decoder).__name__} extracted from a memory model

The decoder (`model_type: {decoder.config.model_type}`, {n_params / 1e6:.2f}M parameters) of the memory model
`{origin}`, extracted with `memory-models export --decoder-only`. It is the decoder without memories (as in
Badger 2026, *Language Model Memory and Memory Models for Language*, Tables S1/S2) and loads without
`trust_remote_code`:

```python
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("PATH")
```
{positions}
Tested with transformers {transformers.__version__}.
"""
