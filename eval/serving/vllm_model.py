"""The vLLM model class of a memory model: its decoder, served from the memory-model folder itself.

Loaded only inside vLLM (`vllm_plugin.register` registers it for the architecture `MemoryForCausalLM`). vLLM reads
the folder's `config.json` (a `MemoryConfig`, whose text config is the decoder's), builds the decoder's own vLLM
class from `decoder_config` (e.g. vLLM's `LlamaForCausalLM`) and streams the folder's weights through
`load_weights`, which keeps the decoder's (and the learned decoder position table, if any) and skips the encoder,
the bottleneck, the projection and the filler: a request brings its memory slots as prompt embeddings.

With `position_embedding="learned"` the decoder adds row `p` of `decoder_position_embeddings` to its input
embedding at decoder position `p`. vLLM numbers a prompt of `S + f` embeddings `0 .. S+f-1` and every token it
generates after it onward, which is exactly the decoder position of the fixed layout; so the row is added here, by
`positions`, to every input embedding, the prompt's and the generated tokens'. Clients send the embeddings
without the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.utils import init_vllm_registered_model, maybe_prefix

from memory_models.eval.serving.rules import POSITION_TABLE, check_servable, uses_position_table

SKIPPED = ("encoder.", "memory_compress.", "memory_expand.", "memory_projection.", "filler")


class MemoryDecoderForVLLM(nn.Module):
    """A memory model's decoder in vLLM: the decoder's registered vLLM class, plus the learned position table."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        check_servable(config)  # refused before any weight is read, with the reason
        self.config = config
        self.decoder = init_vllm_registered_model(vllm_config, prefix=maybe_prefix(prefix, "decoder"),
                                                  hf_config=config.decoder_config)
        self.position_table = None
        if uses_position_table(config):
            self.position_table = nn.Embedding(config.decoder_length, config.decoder_config.hidden_size,
                                               dtype=vllm_config.model_config.dtype)
        self.make_empty_intermediate_tensors = self.decoder.make_empty_intermediate_tensors

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed_input_ids(input_ids)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if self.position_table is not None:
            if inputs_embeds is None:
                inputs_embeds = self.embed_input_ids(input_ids)
            inputs_embeds = inputs_embeds + self.position_table(positions)
            input_ids = None
        return self.decoder(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.decoder.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """The decoder's weights (`decoder.*`) and the position table; the memory side's are skipped."""
        loaded = set()

        def decoder_weights():
            for name, tensor in weights:
                if name == f"{POSITION_TABLE}.weight" and self.position_table is not None:
                    self.position_table.weight.data.copy_(tensor)
                    loaded.add("position_table.weight")
                elif name.startswith("decoder."):
                    yield name.removeprefix("decoder."), tensor
                elif not name.startswith(SKIPPED):
                    raise ValueError(f"the memory-model folder holds a weight vLLM does not know where to put: {name}")

        loaded |= {f"decoder.{name}" for name in self.decoder.load_weights(decoder_weights())}
        return loaded
