"""What every family shares to behave like any transformers model: output flags, tuples for `return_dict=False`,
model kwargs forwarded by `prepare_inputs_for_generation`, and clear refusals where a habit cannot apply."""

import torch

# Keys that generate() hands to `prepare_inputs_for_generation` for its own bookkeeping; transformers' own
# `prepare_inputs_for_generation` does not forward them to `forward` either.
GENERATED_AFTER_EMBEDS = "tokens_generated_after_inputs_embeds"  # see `PromptEmbedsGenerationMixin`
GENERATION_ONLY_KEYS = ("labels", "next_sequence_length", "is_first_iteration", GENERATED_AFTER_EMBEDS)


def output_flags(config, output_attentions=None, output_hidden_states=None, return_dict=None) -> tuple:
    """The `output_attentions`, `output_hidden_states` and `return_dict` of a call: the argument, else the config's.

    `output_hidden_states` may also select states by index, as transformers' output capturing does (an index or
    a list of them, negative ones counted from the end): it is returned as a tuple of indices then (truthy unless
    empty), else as a `bool`; [`select_hidden_states`] applies it. Pass `bool(...)` of it to inner models.
    """
    hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    elif isinstance(hidden, (list, tuple)):
        hidden = tuple(hidden)
    else:
        hidden = bool(hidden)
    return (
        bool(config.output_attentions if output_attentions is None else output_attentions),
        hidden,
        bool(config.return_dict if return_dict is None else return_dict),
    )


def select_hidden_states(states, selection):
    """Every state of `states` (one per layer, and the input's first), or, when `selection` is a tuple of indices
    (see [`output_flags`]), the same tuple with `None` in place of the states it does not pick: the positions stay
    as transformers' output capturing keeps them."""
    if states is None or not isinstance(selection, tuple):
        return states
    count = len(states)
    picked = {index % count for index in selection if -count <= index < count}
    return tuple(state if index in picked else None for index, state in enumerate(states))


PARALLEL_PLANS = ("_tp_plan", "_pp_plan", "_ep_plan", "_fsdp_plan")


def remove_submodule(model, name: str) -> None:
    """Drop an unused sub-module of a transformers model (`embed_tokens` of a decoder fed `inputs_embeds`, a
    `pooler`) together with the parallel-plan entries that name it: a plan naming a module that does not exist
    breaks tensor-parallel loading."""
    setattr(model, name, None)
    for plan_name in PARALLEL_PLANS:
        plan = getattr(model, plan_name, None)
        if plan:
            setattr(model, plan_name, {key: value for key, value in plan.items()
                                       if key != name and not key.startswith(f"{name}.")})


class VocabularyResizeMixin:
    """`resize_token_embeddings` for composite models: transformers resizes the input embeddings (and the head) and
    sets the text config's `vocab_size`; here an encoder with its own token embedding is resized too (encoder and
    decoder read one vocabulary) and every `vocab_size` of the config follows, so that the input checks, the Trainer
    and `generate` see the new size."""

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        size = embeddings.weight.shape[0]
        encoder = getattr(self, "encoder", None)
        if encoder is not None and encoder.get_input_embeddings() is not embeddings:
            encoder.resize_token_embeddings(size, mean_resizing=mean_resizing)
        for config in (self.config, getattr(self.config, "encoder_config", None),
                       getattr(self.config, "decoder_config", None)):
            if config is not None and hasattr(config, "vocab_size"):
                config.vocab_size = size
        return embeddings


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


def embeds_beyond_cache(inputs_embeds: torch.Tensor, cache) -> torch.Tensor:
    """The part of a `generate(inputs_embeds=..., past_key_values=cache)` prompt the cache has not read yet: the
    positions after its `seen` ones (transformers' continuation from `inputs_embeds`)."""
    if inputs_embeds.shape[1] <= cache.seen:
        raise ValueError(f"inputs_embeds hold {inputs_embeds.shape[1]} positions, but the cache passed with them has "
                         f"read {cache.seen} already: pass the embeddings of the whole sequence, new positions last")
    return inputs_embeds[:, cache.seen :]


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
