"""Memory autoencoder and information-retention probe (Badger 2026, the autoencoders of Tables 1 and 2).

An encoder turns `L` tokens into one embedding; a decoder reconstructs all `L` tokens from it. With a
frozen (e.g. pretrained) encoder and a fresh decoder, the reconstruction accuracy measures how much of
the input the encoder's embedding retains (the paper's "information retention").
"""

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, LlamaModel, PreTrainedModel
from transformers.utils import ModelOutput

from .auto_map import AutoMapMixin
from .configuration_autoencoder import MemoryAutoencoderConfig
from .input_checks import check_inputs
from .model_utils import (
    FrozenEncoderMixin,
    VocabularyResizeMixin,
    as_return,
    check_no_attentions,
    output_flags,
    remove_submodule,
    select_hidden_states,
)
from .modeling_masked_mixer import MaskedMixerModel
from .sequence_ops import IGNORE_INDEX, loss_divisor


@dataclass
class MemoryAutoencoderOutput(ModelOutput):
    """
    Output of [`MemoryAutoencoder`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): token-mean cross-entropy of the
            reconstruction over labels != -100 (only when `labels` are given).
        logits (`torch.FloatTensor` of shape `[batch, seq_len, vocab]`): position `i` reconstructs token `i`
            (unshifted).
        memory_embeds (`torch.FloatTensor` of shape `[batch, decoder_hidden]`): the single embedding the
            decoder is conditioned on (after compression and bridge).
        decoder_hidden_states / encoder_hidden_states (*optional*, with `output_hidden_states`): `num_hidden_layers
            + 1` states `[batch, seq_len, hidden]` of each side (named as in transformers' encoder-decoder outputs).
        decoder_attentions / encoder_attentions (*optional*, with `output_attentions` and eager attention):
            `num_hidden_layers` weights `[batch, heads, seq_len, seq_len]` of each side with attention (`None` for
            a masked-mixer side).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    memory_embeds: torch.FloatTensor | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None


def unroll_index(length: int, hidden: int, device=None) -> torch.LongTensor:
    """`idx[i, q] = ((i mod D) + q) mod D` for `i < length`, `q < D/2`: the paper's cyclic unroll windows.

    Built on the fly (a few hundred integers): a non-persistent buffer would come back uninitialised from
    `from_pretrained`, which materialises models from the meta device.
    """
    positions = torch.arange(length, device=device)[:, None] % hidden
    offsets = torch.arange(hidden // 2, device=device)[None, :]
    return (positions + offsets) % hidden  # (L, D/2)


def unroll_windows(embedding: torch.Tensor, length: int) -> torch.Tensor:
    """Gather the `length` cyclic windows of width `D/2` of `embedding` `[batch, D]` -> `[batch, length, D/2]`."""
    hidden = embedding.shape[-1]
    index = unroll_index(length, hidden, embedding.device).flatten()  # (L * D/2,)
    # index_select (one gather) is ~50x faster on CPU than advanced indexing `embedding[:, index_2d]`.
    return embedding.index_select(-1, index).view(*embedding.shape[:-1], length, hidden // 2)


# Encoder sub-modules that never feed `last_hidden_state` (BERT's pooler): dropped, so that a trainable
# encoder has no unused parameters.
UNUSED_ENCODER_MODULES = ("pooler",)


def build_encoder(config) -> PreTrainedModel:
    """Our masked mixer by explicit dispatch (not registered on a Hub user's machine), anything else via AutoModel."""
    encoder = MaskedMixerModel(config) if config.model_type == "masked_mixer" else AutoModel.from_config(config)
    for name in UNUSED_ENCODER_MODULES:
        if isinstance(getattr(encoder, name, None), nn.Module):
            remove_submodule(encoder, name)
    return encoder


def build_decoder(config) -> PreTrainedModel:
    """A `LlamaModel` or `MaskedMixerModel` fed by `inputs_embeds`, without its (unused) token embedding."""
    decoder = LlamaModel(config) if config.model_type == "llama" else MaskedMixerModel(config)
    # The decoder only ever reads inputs_embeds: an embedding here would be an unused parameter
    # (forcing DDP's find_unused_parameters, and V x d of wasted optimiser state).
    remove_submodule(decoder, "embed_tokens")
    return decoder


class MemoryAutoencoderPreTrainedModel(AutoMapMixin, PreTrainedModel):
    config_class = MemoryAutoencoderConfig
    _auto_map_classes = {"AutoModel": "MemoryAutoencoder"}
    base_model_prefix = "autoencoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # No `_no_split_modules` here: transformers gathers it from the sub-models actually built (e.g. only
    # LlamaDecoderLayer for a Llama encoder and decoder), which is what FSDP wrapping and device_map need.

    def _init_weights(self, module):
        # The encoder and decoder are PreTrainedModels: transformers dispatches their own `_init_weights`
        # (including Llama's rotary `inv_freq` buffer); only our own layers arrive here.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)


class MemoryAutoencoder(FrozenEncoderMixin, VocabularyResizeMixin, MemoryAutoencoderPreTrainedModel):
    """Encode `L` tokens into one embedding, expand it to `L` decoder inputs, reconstruct the tokens.

    Modules: `encoder` (any transformers base model, or our masked mixer), optional compression
    (`compression_down` / `compression_up`, before the bridge), optional `bridge` (encoder width ->
    decoder width), `projection` (unroll only), `decoder` (`LlamaModel` or `MaskedMixerModel` on
    `inputs_embeds`) and `lm_head`.

    Example:

    >>> from transformers import LlamaConfig
    >>> block = LlamaConfig(vocab_size=99, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                     num_attention_heads=2, max_position_embeddings=16)
    >>> model = MemoryAutoencoder(MemoryAutoencoderConfig(block, block.to_dict(), max_position_embeddings=16))
    >>> model(torch.randint(0, 99, (2, 16))).logits.shape
    torch.Size([2, 16, 99])
    """

    accepts_loss_kwargs = True  # the loss honours `num_items_in_batch` (Trainer: no extra scaling)

    def __init__(self, config: MemoryAutoencoderConfig):
        super().__init__(config)
        encoder_hidden = config.encoder_hidden_size
        decoder_hidden = config.decoder_config.hidden_size
        self.encoder = build_encoder(config.encoder_config)
        if config.compression > 1:
            self.compression_down = nn.Linear(encoder_hidden, encoder_hidden // config.compression)
            self.compression_up = nn.Linear(encoder_hidden // config.compression, encoder_hidden)
        if encoder_hidden != decoder_hidden:
            self.bridge = nn.Linear(encoder_hidden, decoder_hidden)
        if config.expansion == "unroll":
            self.projection = nn.Linear(decoder_hidden // 2, decoder_hidden)
        self.decoder = build_decoder(config.decoder_config)
        self.lm_head = nn.Linear(decoder_hidden, config.vocab_size, bias=False)
        self._encoder_takes_use_cache = "use_cache" in inspect.signature(self.encoder.forward).parameters
        self.post_init()
        self.apply_freezing()

    @classmethod
    def from_encoder(cls, encoder_model: PreTrainedModel, decoder_config, **config_kwargs) -> "MemoryAutoencoder":
        """Build a probe around a copy of an existing (pretrained) base model.

        Args:
            encoder_model: a transformers base model (`LlamaModel`, `BertModel`, `MaskedMixerModel`, ...);
                its weights are copied, the instance itself is left untouched.
            decoder_config: `llama` / `masked_mixer` config (or dict) of the fresh decoder.
            **config_kwargs: other [`MemoryAutoencoderConfig`] fields; `freeze_encoder` defaults to `True`.
        """
        config_kwargs.setdefault("freeze_encoder", True)
        encoder_config = encoder_model.config
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            config_kwargs.setdefault(name, getattr(encoder_config, name, None))
        config = MemoryAutoencoderConfig(encoder_config, decoder_config, **config_kwargs)
        model = cls(config)
        missing, unexpected = model.encoder.load_state_dict(encoder_model.state_dict(), strict=False)
        unexpected = [key for key in unexpected if key.split(".")[0] not in UNUSED_ENCODER_MODULES]
        if missing or unexpected:
            raise ValueError(f"encoder weights do not fit: missing {missing}, unexpected {unexpected}")
        if config.freeze_encoder and config.fresh_encoder_embedding:
            embedding = model.encoder.get_input_embeddings().weight
            with torch.no_grad():  # a fresh embedding at the scale the frozen blocks were trained on
                embedding.normal_(0.0, embedding.float().std().item())
        model.apply_freezing()
        return model

    # ------------------------------------------------------------------ embeddings
    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.encoder.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    # ------------------------------------------------------------------ forward
    def _run_encoder(self, input_ids, attention_mask, inputs_embeds, output_attentions=False,
                     output_hidden_states=False):
        """The encoder's output (a frozen encoder runs without grad); attention weights only from attention."""
        kwargs = {"attention_mask": attention_mask} if self.config.pass_attention_mask_to_encoder else {}
        if self._encoder_takes_use_cache:
            kwargs["use_cache"] = False
        if output_attentions and self.config.encoder_config.model_type != "masked_mixer":
            kwargs["output_attentions"] = True
        needs_grad = self.encoder_needs_grad or (inputs_embeds is not None and inputs_embeds.requires_grad)
        with torch.set_grad_enabled(torch.is_grad_enabled() and needs_grad):
            return self.encoder(input_ids=input_ids, inputs_embeds=inputs_embeds,
                                output_hidden_states=output_hidden_states, return_dict=True, **kwargs)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Select the pooled position of `hidden` `[batch, seq_len, d]` -> `[batch, d]`."""
        length = hidden.shape[1]
        pooling = self.config.pooling
        if pooling == "penultimate":
            if length < 2:
                raise ValueError(f"pooling='penultimate' needs at least 2 tokens, got seq_len={length}")
            return hidden[:, -2]
        if pooling == "last" or attention_mask is None:
            return hidden[:, -1]
        # last_nonpad: the last position with attention_mask == 1 (works for left and right padding).
        positions = torch.arange(length, device=hidden.device).expand(hidden.shape[0], length)
        last = torch.where(attention_mask.to(hidden.device).bool(), positions, -1).amax(-1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def expand(self, memory: torch.Tensor, length: int) -> torch.Tensor:
        """Turn the embedding `[batch, D]` into `length` decoder inputs `[batch, length, D]` (unroll or repeat)."""
        if self.config.expansion == "unroll":
            return self.projection(unroll_windows(memory, length))  # (B, L, D/2) -> (B, L, D)
        return memory[:, None, :].expand(-1, length, -1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        shift_labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> MemoryAutoencoderOutput | tuple:
        """
        Args:
            input_ids (`[batch, seq_len]`): tokens to reconstruct, `seq_len <= max_position_embeddings`.
            attention_mask (`[batch, seq_len]`, *optional*): 1 for tokens, 0 for padding; used by
                `pooling="last_nonpad"` and, if `pass_attention_mask_to_encoder`, by the encoder.
            labels (`[batch, seq_len]`, *optional*): targets aligned with `input_ids` (no shift); -100 ignored.
            inputs_embeds (`[batch, seq_len, encoder_hidden]`, *optional*): encoder input embeddings
                instead of `input_ids`.
            output_attentions / output_hidden_states / return_dict: as in transformers (see the output's fields;
                attention weights need `attn_implementation="eager"`).
            shift_labels: refused (`ValueError`): the reconstruction targets are not shifted.
        Returns:
            [`MemoryAutoencoderOutput`] with `logits` `[batch, seq_len, vocab]` (a tuple if not `return_dict`).
        """
        output_attentions, output_hidden_states, return_dict = output_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        if shift_labels is not None:
            raise ValueError("shift_labels: the autoencoder reconstructs every token in place (position i predicts "
                             "token i), so there is nothing to shift; pass the targets as labels")
        kinds = (self.config.encoder_config.model_type, self.config.decoder_config.model_type)
        if all(kind == "masked_mixer" for kind in kinds):
            check_no_attentions("every part of this autoencoder", output_attentions)
        _, length = check_inputs(self.get_input_embeddings().num_embeddings, self.config.encoder_hidden_size, input_ids,
                                 attention_mask, inputs_embeds, labels)
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"input length {length} exceeds the autoencoder length max_position_embeddings="
                f"{self.config.max_position_embeddings}"
            )
        encoded = self._run_encoder(input_ids, attention_mask, inputs_embeds, output_attentions,
                                    bool(output_hidden_states))
        memory = self.pool(encoded.last_hidden_state, attention_mask).to(self.lm_head.weight.dtype)  # (B, d_e)
        if self.config.compression > 1:
            memory = self.compression_up(self.compression_down(memory))
        if hasattr(self, "bridge"):
            memory = self.bridge(memory)  # (B, D)
        decoder_kwargs = {"use_cache": False} if isinstance(self.decoder, LlamaModel) else {}
        if output_attentions and kinds[1] != "masked_mixer":
            decoder_kwargs["output_attentions"] = True
        decoded = self.decoder(inputs_embeds=self.expand(memory, length),  # (B, L, D)
                               output_hidden_states=bool(output_hidden_states), return_dict=True, **decoder_kwargs)
        logits = self.lm_head(decoded.last_hidden_state)  # (B, L, V)
        loss = None
        if labels is not None:
            loss = reconstruction_loss(logits, labels, num_items_in_batch)
        output = MemoryAutoencoderOutput(
            loss=loss, logits=logits, memory_embeds=memory,
            decoder_hidden_states=select_hidden_states(decoded.hidden_states, output_hidden_states),
            decoder_attentions=getattr(decoded, "attentions", None),
            encoder_hidden_states=select_hidden_states(encoded.hidden_states, output_hidden_states),
            encoder_attentions=getattr(encoded, "attentions", None),
        )
        return as_return(output, return_dict)


def reconstruction_loss(logits: torch.Tensor, labels: torch.LongTensor, num_items_in_batch=None) -> torch.Tensor:
    """Unshifted token-mean cross-entropy of `logits` `[b, L, V]` against `labels` `[b, L]` (-100 ignored).

    `num_items_in_batch` (a whole optimizer step's target count, from the `Trainer`) replaces this batch's count
    as the divisor. A batch without any target gives 0 (not NaN), so that fully padded batches cannot poison training.
    """
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}")
    labels = labels.to(logits.device)
    total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return total / loss_divisor(labels, num_items_in_batch)
