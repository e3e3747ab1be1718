"""Configuration of the masked mixer (Badger 2026, "Language Model Memory and Memory Models for Language")."""

from transformers import PretrainedConfig

from .capabilities import Capabilities


class MaskedMixerConfig(PretrainedConfig):
    r"""
    Configuration for [`MaskedMixerModel`] and [`MaskedMixerForCausalLM`].

    A masked mixer replaces attention with a position-specific, causally masked token-mixing
    convolution: the token axis is the channel axis and the kernel slides along the hidden axis.

    Args:
        vocab_size (`int`, *optional*, defaults to 8000):
            Number of token ids.
        hidden_size (`int`, *optional*, defaults to 512):
            Width `d` of the token representations.
        num_hidden_layers (`int`, *optional*, defaults to 8):
            Number of mixer blocks.
        max_position_embeddings (`int`, *optional*, defaults to 512):
            The mixer's length `L`: the token-mixing weights are `[L, L, k]`. Inputs may be shorter
            (the leading `[T, T]` block of the weights is used) but never longer.
        kernel_size (`int`, *optional*, defaults to 1):
            Width `k` of the token-mixing convolution along the *hidden* axis (not a temporal window).
        num_heads (`int`, *optional*, defaults to 0):
            0 selects the plain masked convolution; `h > 0` the multi-head mixer (per-head projection
            `d -> d/h`, per-head masked convolution, output projection `d -> d`).
        intermediate_size (`int`, *optional*):
            Width of the feed-forward layer; defaults to `4 * hidden_size`.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the two LayerNorms of each block.
        causal (`bool`, *optional*, defaults to `True`):
            Mask the token mixing so that position `t` only reads positions `<= t`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of embeddings and linear layers.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Share the input embedding with the output head.
        pad_token_id / bos_token_id / eos_token_id (`int`, *optional*):
            Special token ids (the paper's 8k tokenizer: bos 0, eos = pad = 1).

    Example:

    >>> from memory_models.modeling_memory import MaskedMixerConfig, MaskedMixerForCausalLM
    >>> model = MaskedMixerForCausalLM(MaskedMixerConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2))
    """

    model_type = "masked_mixer"
    capabilities = Capabilities(has_attention=False, native=False)  # no attention mask, weights or KV cache

    def __init__(
        self,
        vocab_size: int = 8000,
        hidden_size: int = 512,
        num_hidden_layers: int = 8,
        max_position_embeddings: int = 512,
        kernel_size: int = 1,
        num_heads: int = 0,
        intermediate_size: int | None = None,
        layer_norm_eps: float = 1e-5,
        causal: bool = True,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = 1,
        use_cache: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        self.kernel_size = kernel_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.layer_norm_eps = layer_norm_eps
        self.causal = causal
        self.initializer_range = initializer_range
        self.use_cache = False  # mixers have no KV cache; generation recomputes the prefix
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self._validate()
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def _validate(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings", "kernel_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MaskedMixerConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_heads, int) or self.num_heads < 0:
            raise ValueError(f"MaskedMixerConfig.num_heads must be >= 0, got {self.num_heads!r}")
        if self.num_heads and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_heads and not self.causal:
            raise ValueError("the multi-head mixer is always causal: set causal=True or num_heads=0")
