"""Masked mixer language model (Badger 2026): attention replaced by causally masked token-mixing convolutions."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput

from .auto_map import AutoMapMixin
from .configuration_masked_mixer import MaskedMixerConfig
from .input_checks import check_inputs, check_targets
from .model_utils import (
    GENERATED_AFTER_EMBEDS,
    PromptEmbedsGenerationMixin,
    as_return,
    check_no_attentions,
    forward_generation_kwargs,
    output_flags,
    refuse_assisted_decoding,
    select_hidden_states,
)
from .sequence_ops import causal_lm_loss, left_pad_shift, roll_rows


def _same_padding(hidden_states: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-pad the hidden (last) axis as PyTorch's `padding="same"` does: `(k-1)//2` left, the rest right."""
    left = (kernel_size - 1) // 2
    return F.pad(hidden_states, (left, kernel_size - 1 - left))


def _causal_weight(weight: torch.Tensor, length: int, causal: bool) -> torch.Tensor:
    """Leading `[length, length]` block of a `[..., L, L, k]` mixing weight, lower-triangular if causal.

    The mask is applied functionally (never by writing `.data`), so masked entries get zero gradient
    and the module stays safe under torch.compile and FSDP.
    """
    weight = weight[..., :length, :length, :]
    if causal:
        mask = torch.ones(length, length, dtype=torch.bool, device=weight.device).tril()
        weight = weight * mask[:, :, None]
    return weight


class MaskedTokenMixing(nn.Module):
    """`y[b, t] = bias[t] + sum_{t' <= t} W[t, t'] (*) x[b, t']`, a 1-D convolution along the hidden axis."""

    def __init__(self, length: int, kernel_size: int, causal: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.causal = causal
        self.weight = nn.Parameter(torch.empty(length, length, kernel_size))  # (out token, in token, tap)
        self.bias = nn.Parameter(torch.empty(length))
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch's Conv1d default (fan_in = L * k), as in the paper's models.
        bound = 1.0 / math.sqrt(self.weight.shape[1] * self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        length = hidden_states.shape[1]  # (B, T, D)
        weight = _causal_weight(self.weight, length, self.causal)
        if self.kernel_size == 1:
            return torch.matmul(weight[..., 0], hidden_states) + self.bias[:length, None]
        return F.conv1d(_same_padding(hidden_states, self.kernel_size), weight, self.bias[:length])


class MultiHeadTokenMixing(nn.Module):
    """Multi-head mixer: per-head projection `d -> d/h`, per-head masked mixing, output projection `d -> d`.

    All heads run as one grouped convolution; the per-head projections are one `Linear(d, d)`.
    """

    def __init__(self, hidden_size: int, length: int, kernel_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.head_proj = nn.Linear(hidden_size, hidden_size)
        self.weight = nn.Parameter(torch.empty(num_heads, length, length, kernel_size))
        self.bias = nn.Parameter(torch.empty(num_heads, length))
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[2] * self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = hidden_states.shape
        heads = self.num_heads
        z = self.head_proj(hidden_states).view(batch, length, heads, hidden // heads).transpose(1, 2)  # (B, h, T, d/h)
        weight = _causal_weight(self.weight, length, causal=True)  # (h, T, T, k)
        bias = self.bias[:, :length]
        if self.kernel_size == 1:
            u = torch.matmul(weight[..., 0], z) + bias[..., None]
        else:
            u = F.conv1d(
                _same_padding(z.reshape(batch, heads * length, -1), self.kernel_size),
                weight.reshape(heads * length, length, self.kernel_size),
                bias.reshape(-1),
                groups=heads,
            ).view(batch, heads, length, -1)
        return self.out_proj(u.transpose(1, 2).reshape(batch, length, hidden))


class MaskedMixerBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: `x + mix(LN(x))`, then `x + FF(LN(x))` (GELU feed-forward).

    A `GradientCheckpointingLayer`: `gradient_checkpointing_enable()` recomputes it in the backward pass.
    """

    def __init__(self, config: MaskedMixerConfig, length: int | None = None):
        super().__init__()
        length = length or config.max_position_embeddings
        d = config.hidden_size
        self.seq_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.patch_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        if config.num_heads:
            self.token_mixing = MultiHeadTokenMixing(d, length, config.kernel_size, config.num_heads)
        else:
            self.token_mixing = MaskedTokenMixing(length, config.kernel_size, config.causal)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.intermediate_size), nn.GELU(), nn.Linear(config.intermediate_size, d)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.token_mixing(self.seq_layernorm(hidden_states))
        return hidden_states + self.mlp(self.patch_layernorm(hidden_states))


class MaskedMixerPreTrainedModel(AutoMapMixin, PreTrainedModel):
    config_class = MaskedMixerConfig
    _auto_map_classes = {"AutoModel": "MaskedMixerModel", "AutoModelForCausalLM": "MaskedMixerForCausalLM"}
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MaskedMixerBlock"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (MaskedTokenMixing, MultiHeadTokenMixing)):
            module.reset_parameters()


class MaskedMixerModel(MaskedMixerPreTrainedModel):
    """Token embedding followed by `num_hidden_layers` masked mixer blocks (no final norm, as in the paper)."""

    def __init__(self, config: MaskedMixerConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MaskedMixerBlock(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutput | tuple:
        """
        Args:
            input_ids (`[batch, seq_len]`): token ids, `seq_len <= config.max_position_embeddings`.
            attention_mask (`[batch, seq_len]`, *optional*): 1 = real token. Left-padded rows of a causal mixer are
                rolled so that their tokens start at position 0 (the mixer's weights depend on the position), which gives
                every row exactly its unpadded result; right padding never affects real tokens (causal).
            inputs_embeds (`[batch, seq_len, hidden]`): used instead of `input_ids`.
            output_hidden_states (`bool`, *optional*): also return the embeddings and every block's output.
            output_attentions: refused (`ValueError`): a mixer has no attention weights.
            return_dict (`bool`, *optional*): `False` returns a tuple (defaults to `config.return_dict`).
        Returns:
            `BaseModelOutput` with `last_hidden_state` `[batch, seq_len, hidden]` and, if asked, `hidden_states`
            (`num_hidden_layers + 1` tensors `[batch, seq_len, hidden]`).
        """
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        check_no_attentions(type(self).__name__, output_attentions)
        vocab_size = self.config.vocab_size if self.embed_tokens is None else self.embed_tokens.num_embeddings
        check_inputs(vocab_size, self.config.hidden_size, input_ids, attention_mask, inputs_embeds)
        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        shift = left_pad_shift(attention_mask) if attention_mask is not None and self.config.causal else None
        hidden_states = roll_rows(hidden_states, shift)
        length = hidden_states.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {length} exceeds the mixer length max_position_embeddings="
                f"{self.config.max_position_embeddings}"
            )
        all_states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states)
            if output_hidden_states:
                all_states.append(hidden_states)
        states = tuple(roll_rows(h, shift, inverse=True) for h in all_states) if output_hidden_states else None
        output = BaseModelOutput(last_hidden_state=roll_rows(hidden_states, shift, inverse=True),
                                 hidden_states=select_hidden_states(states, output_hidden_states))
        return as_return(output, return_dict)


class MaskedMixerForCausalLM(MaskedMixerPreTrainedModel, PromptEmbedsGenerationMixin, GenerationMixin):
    """Masked mixer with a language-modelling head. `generate()` recomputes the prefix (no KV cache)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    accepts_loss_kwargs = True  # the loss honours `num_items_in_batch` (Trainer: no extra scaling)

    def __init__(self, config: MaskedMixerConfig):
        super().__init__(config)
        self.model = MaskedMixerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        shift_labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutput | tuple:
        """
        Args:
            input_ids (`[batch, seq_len]`), attention_mask, inputs_embeds, output_hidden_states, output_attentions,
                return_dict: see [`MaskedMixerModel`].
            labels (`[batch, seq_len]`, *optional*): next-token targets aligned with `input_ids`
                (the shift happens inside); `-100` is ignored.
            shift_labels (`[batch, seq_len]`, *optional*): targets already aligned with the logits (position `p`
                predicts `shift_labels[:, p]`), as the `Trainer` passes them under context parallelism; they replace
                the shifted `labels`.
        Returns:
            `CausalLMOutput` with `loss` (only when `labels` or `shift_labels` are given), `logits`
            `[batch, seq_len, vocab]` and, if asked, `hidden_states`.
        """
        _, _, return_dict = output_flags(self.config, output_attentions, output_hidden_states, return_dict)
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is not None:
            check_targets(self.config.vocab_size, tuple(reference.shape[:2]), labels, shift_labels)
        outputs = self.model(input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                             return_dict=True)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None or shift_labels is not None:
            loss = causal_lm_loss(logits, labels, num_items_in_batch, shift_labels)
        return as_return(CausalLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states), return_dict)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, inputs_embeds=None, **kwargs):
        """No cache: every step re-runs the whole (causal) prefix. A prompt given as `inputs_embeds` is kept and the
        tokens generated so far (`input_ids`) are embedded after it; model kwargs pass through to `forward`."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if inputs_embeds is not None:
            generated = kwargs.get(GENERATED_AFTER_EMBEDS, 0)
            embeds = self.prompt_embeds_with_new_tokens(input_ids, inputs_embeds, generated)
            inputs.update(input_ids=None, inputs_embeds=embeds)
        kwargs.pop("past_key_values", None)  # none to use: mixers have no cache
        return forward_generation_kwargs(inputs, kwargs)

    def _assisted_decoding(self, *args, **kwargs):
        refuse_assisted_decoding(type(self).__name__, "it has no KV cache to verify candidate tokens against")

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False
