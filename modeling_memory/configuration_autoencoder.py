"""Configuration of the memory autoencoder / information-retention probe (Badger 2026, Tables 1 and 2)."""

from transformers import AutoConfig, PretrainedConfig

from .capabilities import Capabilities
from .config_utils import (
    OWN_MODEL_TYPES,
    POOLINGS,
    RequiredFieldsMixin,
    build_sub_config,
    check_choice,
    check_positive_int,
    context_length,
    keep_sub_config_implementations,
    paper_llama,
)

EXPANSIONS = ("unroll", "repeat")


class MemoryAutoencoderConfig(RequiredFieldsMixin, PretrainedConfig):
    r"""
    Configuration for [`MemoryAutoencoder`]: encode `L` tokens into one embedding, then reconstruct them.

    With a frozen (e.g. pretrained) encoder the same model is the paper's information-retention probe:
    a fresh decoder learns to invert the encoder's embedding, and its accuracy measures how much of the
    input the embedding holds.

    Args:
        encoder_config (`dict` or `PretrainedConfig`, *optional*):
            Any encoder: our `llama` / `masked_mixer` configs or any transformers model type (e.g. `bert`,
            `qwen3`). Defaults to the paper's transformer autoencoder encoder (Llama, d=512, 8 layers).
        decoder_config (`dict` or `PretrainedConfig`, *optional*):
            `llama` or `masked_mixer` decoder; defaults to a copy of a Llama encoder's shape.
        max_position_embeddings (`int`, *optional*, defaults to 512): tokens per input (the paper's `n_ctx`).
        expansion (`str`, *optional*, defaults to `"unroll"`):
            How the single embedding becomes `L` decoder inputs: `"unroll"` (cyclic windows of width `d/2`
            through one shared projection, as in the paper) or `"repeat"` (the embedding tiled `L` times).
        compression (`int`, *optional*, defaults to 1): bottleneck factor `c` (`d -> d/c -> d`).
        pooling (`str`, *optional*, defaults to `"last"`):
            `"last"`, `"penultimate"` (for causal mixers, whose last row is never trained) or `"last_nonpad"`.
        freeze_encoder (`bool`, *optional*, defaults to `False`): freeze the encoder, run it under `no_grad`.
        fresh_encoder_embedding (`bool`, *optional*, defaults to `False`):
            The paper's probe variant: a fresh trainable token embedding in front of the frozen blocks.
        pass_attention_mask_to_encoder (`bool`, *optional*, defaults to `True`):
            Give the encoder the attention mask (the paper's probes passed none).
        pad_token_id / bos_token_id / eos_token_id (`int`, *optional*): special tokens.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of new layers.
    """

    model_type = "memory_autoencoder"
    capabilities = Capabilities(is_autoencoder=True, has_encoder=True, native=False)
    sub_configs = {"encoder_config": AutoConfig, "decoder_config": AutoConfig}
    required_fields = ("encoder_config", "decoder_config", "max_position_embeddings")

    def __init__(
        self,
        encoder_config=None,
        decoder_config=None,
        max_position_embeddings: int = 512,
        expansion: str = "unroll",
        compression: int = 1,
        pooling: str = "last",
        freeze_encoder: bool = False,
        fresh_encoder_embedding: bool = False,
        pass_attention_mask_to_encoder: bool = True,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = 1,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        for derived in ("vocab_size", "hidden_size"):
            kwargs.pop(derived, None)
        if encoder_config is None:
            encoder_config = paper_llama(512, 8, positions=max_position_embeddings)
        self.encoder_config = build_sub_config(encoder_config, "encoder_config")
        if decoder_config is None:
            if self.encoder_config.model_type not in OWN_MODEL_TYPES:
                raise ValueError(
                    f"decoder_config is required for an encoder of type {self.encoder_config.model_type!r}"
                )
            decoder_config = self.encoder_config.to_dict()
        self.decoder_config = build_sub_config(decoder_config, "decoder_config", OWN_MODEL_TYPES)
        self.max_position_embeddings = max_position_embeddings
        self.expansion = expansion
        self.compression = compression
        self.pooling = pooling
        self.freeze_encoder = freeze_encoder
        self.fresh_encoder_embedding = fresh_encoder_embedding
        self.pass_attention_mask_to_encoder = pass_attention_mask_to_encoder
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.initializer_range = initializer_range
        self.vocab_size = self.decoder_config.vocab_size
        self.hidden_size = self.decoder_config.hidden_size
        self._validate()
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**keep_sub_config_implementations(kwargs))

    def get_text_config(self, decoder=None, encoder=None) -> PretrainedConfig:
        """The encoder's config with `encoder=True` only, else the decoder's (the side that produces the text)."""
        if encoder and not decoder:
            return self.encoder_config
        return self.decoder_config

    @property
    def encoder_hidden_size(self) -> int:
        encoder = self.encoder_config
        return getattr(encoder, "hidden_size", None) or getattr(encoder, "d_model")

    def _validate(self):
        owner = "MemoryAutoencoderConfig"
        check_positive_int(owner, "max_position_embeddings", self.max_position_embeddings)
        check_positive_int(owner, "compression", self.compression)
        check_choice(owner, "expansion", self.expansion, EXPANSIONS)
        check_choice(owner, "pooling", self.pooling, POOLINGS)
        length = self.max_position_embeddings
        if self.pooling == "penultimate" and length < 2:
            raise ValueError(f"pooling='penultimate' needs max_position_embeddings >= 2, got {length}")
        for name in ("encoder_config", "decoder_config"):
            positions = context_length(getattr(self, name))
            if positions is not None and positions < length:
                raise ValueError(
                    f"{name} accepts {positions} positions, fewer than max_position_embeddings={length}"
                )
        if self.encoder_hidden_size % self.compression:
            raise ValueError(
                f"compression {self.compression} must divide the encoder hidden size {self.encoder_hidden_size}"
            )
        if self.expansion == "unroll" and self.decoder_config.hidden_size % 2:
            raise ValueError(
                f"expansion='unroll' needs an even decoder hidden_size, got {self.decoder_config.hidden_size}"
            )
        if self.fresh_encoder_embedding and not self.freeze_encoder:
            raise ValueError("fresh_encoder_embedding=True only applies with freeze_encoder=True")
        encoder_vocab = getattr(self.encoder_config, "vocab_size", None)
        if encoder_vocab is not None and encoder_vocab != self.decoder_config.vocab_size:
            raise ValueError(
                f"encoder vocab_size {encoder_vocab} != decoder vocab_size {self.decoder_config.vocab_size}: "
                "the autoencoder reconstructs the encoder's own tokens"
            )
