"""What every family shares to behave like any transformers model: output flags, tuples for `return_dict=False`,
model kwargs forwarded by `prepare_inputs_for_generation`, and clear refusals where a habit cannot apply."""

import torch

# Keys that generate() hands to `prepare_inputs_for_generation` for its own bookkeeping; transformers' own
# `prepare_inputs_for_generation` does not forward them to `forward` either.
GENERATED_AFTER_EMBEDS = "tokens_generated_after_inputs_embeds"  # see `PromptEmbedsGenerationMixin`
GENERATION_ONLY_KEYS = ("labels", "next_sequence_length", "is_first_iteration", GENERATED_AFTER_EMBEDS)


def output_flags(config, output_attentions=None, output_hidden_states=None, return_dict=None) -> tuple[bool, ...]:
    """The `output_attentions`, `output_hidden_states` and `return_dict` of a call: the argument, else the config's."""
    return (
        bool(config.output_attentions if output_attentions is None else output_attentions),
        bool(config.output_hidden_states if output_hidden_states is None else output_hidden_states),
        bool(config.return_dict if return_dict is None else return_dict),
    )


def as_return(output, return_dict: bool):
    """The `ModelOutput` itself, or its tuple of set fields (in field order) for `return_dict=False`."""
    return output if return_dict else output.to_tuple()


def check_no_attentions(owner: str, output_attentions: bool) -> None:
    """A model part without attention cannot return attention weights: say so instead of returning nothing."""
    if output_attentions:
        raise ValueError(f"output_attentions=True: {owner} is a masked mixer, which has no attention weights "
                         "(its token mixing is a learned convolution); output_hidden_states=True works")


def forward_generation_kwargs(model_inputs: dict, kwargs: dict) -> dict:
    """Add every model kwarg of `generate` (e.g. `output_attentions`, custom forward arguments) to `model_inputs`,
    as transformers' own `prepare_inputs_for_generation` does; the ones set already win."""
    for key, value in kwargs.items():
        if key not in GENERATION_ONLY_KEYS and key not in model_inputs:
            model_inputs[key] = value
    return model_inputs


def refuse_assisted_decoding(model_name: str, reason: str):
    raise ValueError(f"assisted decoding (assistant_model=, prompt_lookup_num_tokens=) is not available for "
                     f"{model_name}: {reason}")


class PromptEmbedsGenerationMixin:
    """`generate(inputs_embeds=...)` for a model without a KV cache: every step re-runs the prompt's embeddings
    followed by the embeddings of the tokens generated so far.

    `generate` keeps the prompt's `inputs_embeds` and appends each new token to `input_ids`, which hold the prompt
    ids too when they were passed as well; the number of generation steps, counted here, tells the new tokens apart.
    """

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        if model_kwargs.get("inputs_embeds") is not None:
            model_kwargs[GENERATED_AFTER_EMBEDS] = model_kwargs.get(GENERATED_AFTER_EMBEDS, 0) + 1
        return model_kwargs

    def prompt_embeds_with_new_tokens(self, input_ids, inputs_embeds, generated: int) -> torch.Tensor:
        """`[b, P + g, d]`: the prompt embeddings `[b, P, d]`, then the last `g` tokens of `input_ids` embedded."""
        new_tokens = input_ids[:, input_ids.shape[1] - generated :]
        new_embeds = self.get_input_embeddings()(new_tokens).to(inputs_embeds.dtype)
        return torch.cat([inputs_embeds, new_embeds], dim=1)


class FrozenEncoderMixin:
    """The one freezing API of the families with an encoder (memory model, autoencoder), set by the config:
    `freeze_encoder` freezes the encoder; `fresh_encoder_embedding` (the paper's variant) freezes its blocks behind a
    trainable token embedding. Applied on construction and again after `from_pretrained`, which hands back fresh
    parameters."""

    @property
    def encoder_is_frozen(self) -> bool:
        return bool(self.config.freeze_encoder or self.config.fresh_encoder_embedding)

    @property
    def encoder_needs_grad(self) -> bool:
        """Whether any encoder parameter trains (a frozen encoder otherwise runs without grad)."""
        return any(p.requires_grad for p in self.encoder.parameters())

    def apply_freezing(self):
        """Set `requires_grad` from the config (no encoder parameter trains but, with `fresh_encoder_embedding`, its
        token embedding) and keep a frozen encoder in eval mode (no dropout)."""
        encoder = getattr(self, "encoder", None)
        if encoder is None or not self.encoder_is_frozen:
            return
        encoder.requires_grad_(False)
        if self.config.fresh_encoder_embedding:
            encoder.get_input_embeddings().requires_grad_(True)
        encoder.eval()

    def train(self, mode: bool = True):
        """Like `nn.Module.train`, but a frozen encoder always stays in eval mode."""
        super().train(mode)
        if getattr(self, "encoder", None) is not None and self.encoder_is_frozen:
            self.encoder.eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).apply_freezing()  # a tuple with output_loading_info=True
        return loaded
