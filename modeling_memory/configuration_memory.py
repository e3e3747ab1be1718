"""Configuration of the parallel encoder-decoder memory model (Badger 2026, Tables 3 and 4)."""

from transformers import AutoConfig, LlamaConfig, PretrainedConfig

from .config_utils import (
    OWN_MODEL_TYPES,
    POOLINGS,
    RequiredFieldsMixin,
    build_sub_config,
    check_choice,
    check_decoder_config,
    check_positive_int,
    context_length,
    keep_sub_config_implementations,
)

MEMORY_LAYOUTS = ("fixed", "variable")
MEMORY_WINDOWS = ("bounded", "rolling")
DEFAULT_ROLLING_CONTEXT = 32768  # what a rolling-window model advertises when max_context is not set
FILLERS = ("ones", "zeros", "learned", "masked")
LOSS_REDUCTIONS = ("token_mean", "paper")
POSITION_EMBEDDINGS = ("none", "learned")


def _paper_llama(hidden_size: int, num_layers: int, vocab_size: int, positions: int) -> LlamaConfig:
    # Every small transformer in the paper: intermediate 4d, 4 heads, HF defaults otherwise.
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=positions,
        tie_word_embeddings=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=1,
    )


class MemoryConfig(RequiredFieldsMixin, PretrainedConfig):
    r"""
    Configuration for [`MemoryModel`] and [`MemoryForCausalLM`].

    The input is cut into chunks of `chunk_size` tokens. An encoder turns each complete chunk into one
    embedding (a "memory"); the decoder reads the memories of the preceding chunks, in
    `num_memory_slots` slots in front of the current chunk's tokens, instead of those chunks' tokens.
    The effective context is `num_memory_slots * chunk_size` tokens (`max_position_embeddings`), or, with
    `memory_window="rolling"`, any length (`max_position_embeddings` then advertises `max_context`).

    Args:
        encoder_config (`dict` or `PretrainedConfig`, *optional*):
            Encoder sub-config (`llama` or `masked_mixer`). May be `None` when memories are always
            supplied (`memory_embeds=`) or for the no-memory control.
        decoder_config (`dict` or `PretrainedConfig`, *optional*):
            Decoder sub-config: `llama`, `masked_mixer` or any native transformers decoder-only model type
            (`qwen2`, `qwen3`, `mistral`, `gemma`, ...; see `native_decoders.py`). Defaults to the paper's
            Table 3 decoder (Llama, d=512, 16 layers, 4 heads, vocabulary 8000).
        chunk_size (`int`, *optional*, defaults to 256): tokens per chunk (the paper's `L`).
        num_memory_slots (`int`, *optional*, defaults to 4): memory slots in the decoder (the paper's `s`).
        memory_layout (`str`, *optional*, defaults to `"fixed"`):
            `"fixed"`: slots `[m_0 .. m_{c-1}, filler ...]` always precede the tokens (paper);
            `"variable"`: only the `c` available memories precede the tokens.
        filler (`str`, *optional*, defaults to `"ones"`):
            Content of empty slots in the fixed layout: `"ones"` (paper, transformers), `"zeros"` (paper,
            mixers), `"learned"` (one trained vector), `"masked"` (excluded from attention).
        compression (`int`, *optional*, defaults to 1): bottleneck factor `c` on the memory (`d -> d/c -> d`).
        no_memory (`bool`, *optional*, defaults to `False`): the paper's control: every slot holds the filler.
        pooling (`str`, *optional*, defaults to `"last"`):
            Which encoder position becomes the memory: `"last"`, `"last_nonpad"` or `"penultimate"`.
        freeze_encoder (`bool`, *optional*, defaults to `False`): freeze the encoder and run it without grad.
        fresh_encoder_embedding (`bool`, *optional*, defaults to `False`):
            The paper's variant of a frozen encoder: a freshly initialised, trainable token embedding feeds
            the frozen encoder blocks (gradients then flow through the frozen blocks).
        paper_chunk_targets (`bool`, *optional*, defaults to `False`):
            Train only within-chunk targets as the paper does (the first token of each chunk is never a
            target). Default: ordinary causal targets at every position, chunk boundaries included.
        loss_reduction (`str`, *optional*, defaults to `"token_mean"`):
            `"token_mean"`: one cross-entropy mean over all valid targets. `"paper"`: per-chunk means,
            all-masked chunks skipped, sum divided by the number of chunks.
        clm_loss_weight / copy_loss_weight / retrieval_loss_weight (`float`, *optional*, default 1.0):
            Weights of the loss streams (each a token mean): the causal and copy rows of the combined objective,
            and the answers of the retrieval objective.
        blank_token_id (`int`, *optional*): token of the blank-copy objective; defaults to `pad_token_id`.
        copy_delimiter_token_id (`int`, *optional*): delimiter token of the copy objectives (paper: 100;
            `None`: no delimiter).
        copy_delimiter_length (`int`, *optional*, defaults to 3): number of delimiter tokens (paper: 3).
        pad_token_id / bos_token_id / eos_token_id (`int`, *optional*): special tokens (paper: 1 / 0 / 1).
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of new layers.
        memory_window (`str`, *optional*, defaults to `"bounded"`):
            `"bounded"`: an input (plus given memories) must fit `num_memory_slots` chunks. `"rolling"`: inputs of
            any length; chunk `g >= S-1` reads the `S-1` most recent memories `m_{g-S+1} .. m_{g-1}` in slots
            `0 .. S-2` (oldest first) and the filler in the last slot, exactly the layout of the last chunk in
            training. Both agree on every input that fits.
        max_context (`int`, *optional*): with `"rolling"`, the context length advertised as
            `max_position_embeddings` (what `generate` and lm-eval read; default 32768). The model itself
            accepts longer inputs. Not allowed with `"bounded"`.
        position_embedding (`str`, *optional*, defaults to `"none"`):
            `"none"`: the decoder knows positions only through its own scheme (rotary positions for Llama: the
            paper). `"learned"`: a learned embedding of each of the `num_memory_slots + chunk_size` decoder
            positions of a chunk (slot `j`, token `i` of the chunk) is added to the decoder's input there, so that
            each slot and each token position is told apart directly. Zero-initialised: a pretrained decoder
            starts out exactly as it was. An attention decoder learns to read memories several times faster with
            it (README, "Why blank copy was slow").
    """

    model_type = "memory_model"
    # transformers reaches the inner configs through these keys: `attn_implementation=`, `dtype` and the text config.
    sub_configs = {"encoder_config": AutoConfig, "decoder_config": AutoConfig}
    keys_to_ignore_at_inference = ["past_key_values"]  # a forward returns its cache (use_cache); the Trainer's
    # evaluation keeps it out of the predictions
    required_fields = ("decoder_config", "chunk_size", "num_memory_slots")

    def __init__(
        self,
        encoder_config=None,
        decoder_config=None,
        chunk_size: int = 256,
        num_memory_slots: int = 4,
        memory_layout: str = "fixed",
        filler: str = "ones",
        compression: int = 1,
        no_memory: bool = False,
        pooling: str = "last",
        freeze_encoder: bool = False,
        fresh_encoder_embedding: bool = False,
        paper_chunk_targets: bool = False,
        loss_reduction: str = "token_mean",
        clm_loss_weight: float = 1.0,
        copy_loss_weight: float = 1.0,
        retrieval_loss_weight: float = 1.0,
        blank_token_id: int | None = None,
        copy_delimiter_token_id: int | None = None,
        copy_delimiter_length: int = 3,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = 1,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        memory_window: str = "bounded",
        max_context: int | None = None,
        position_embedding: str = "none",
        **kwargs,
    ):
        for derived in ("vocab_size", "hidden_size", "max_position_embeddings"):
            kwargs.pop(derived, None)  # derived below; present in saved config.json files
        if decoder_config is None:
            decoder_config = _paper_llama(512, 16, 8000, num_memory_slots + chunk_size)
        self.encoder_config = build_sub_config(encoder_config, "encoder_config", OWN_MODEL_TYPES)
        self.decoder_config = build_sub_config(decoder_config, "decoder_config")  # any native decoder-only type
        check_decoder_config(self.decoder_config)
        self.chunk_size = chunk_size
        self.num_memory_slots = num_memory_slots
        self.memory_layout = memory_layout
        self.filler = filler
        self.compression = compression
        self.no_memory = no_memory
        self.pooling = pooling
        self.freeze_encoder = freeze_encoder
        self.fresh_encoder_embedding = fresh_encoder_embedding
        self.paper_chunk_targets = paper_chunk_targets
        self.loss_reduction = loss_reduction
        self.clm_loss_weight = clm_loss_weight
        self.copy_loss_weight = copy_loss_weight
        self.retrieval_loss_weight = retrieval_loss_weight
        self.blank_token_id = pad_token_id if blank_token_id is None else blank_token_id
        self.copy_delimiter_token_id = copy_delimiter_token_id
        self.copy_delimiter_length = copy_delimiter_length
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.memory_window = memory_window
        self.max_context = max_context
        self.position_embedding = position_embedding
        # Fields that Trainer, generate and lm-eval read on the top-level config.
        self.vocab_size = self.decoder_config.vocab_size
        self.hidden_size = self.decoder_config.hidden_size
        self.max_position_embeddings = num_memory_slots * chunk_size if isinstance(chunk_size, int) else None
        if memory_window == "rolling":
            self.max_position_embeddings = DEFAULT_ROLLING_CONTEXT if max_context is None else max_context
        self._validate()
        kwargs.setdefault("tie_word_embeddings", False)  # tying, if any, lives in the decoder sub-config
        super().__init__(**keep_sub_config_implementations(kwargs))

    def get_text_config(self, decoder=None, encoder=None) -> PretrainedConfig:
        """The decoder's config (the text model that `generate`, caches and tying read); with `encoder=True` only,
        the encoder's (when there is one)."""
        if encoder and not decoder and self.encoder_config is not None:
            return self.encoder_config
        return self.decoder_config

    def __setattr__(self, key, value):
        super().__setattr__(key, value)
        # Switching the window of a built or loaded config (`config.memory_window = "rolling"`, or
        # `from_pretrained(..., memory_window="rolling")`, which sets attributes after __init__) keeps
        # the advertised context in step.
        if key in ("memory_window", "max_context") and all(
            name in self.__dict__ for name in ("memory_window", "max_context", "max_position_embeddings")
        ):
            check_choice("MemoryConfig", "memory_window", self.memory_window, MEMORY_WINDOWS)
            if self.memory_window == "rolling":
                self.max_position_embeddings = self.max_context or DEFAULT_ROLLING_CONTEXT
            elif isinstance(self.chunk_size, int):
                self.max_position_embeddings = self.num_memory_slots * self.chunk_size

    @property
    def decoder_length(self) -> int:
        """Positions the decoder sees per chunk: memory slots plus the chunk's tokens."""
        return self.num_memory_slots + self.chunk_size

    def _validate(self):
        owner = "MemoryConfig"
        check_positive_int(owner, "chunk_size", self.chunk_size)
        check_positive_int(owner, "num_memory_slots", self.num_memory_slots)
        check_positive_int(owner, "compression", self.compression)
        check_positive_int(owner, "copy_delimiter_length", self.copy_delimiter_length)
        check_choice(owner, "memory_layout", self.memory_layout, MEMORY_LAYOUTS)
        check_choice(owner, "filler", self.filler, FILLERS)
        check_choice(owner, "pooling", self.pooling, POOLINGS)
        check_choice(owner, "loss_reduction", self.loss_reduction, LOSS_REDUCTIONS)
        check_choice(owner, "memory_window", self.memory_window, MEMORY_WINDOWS)
        check_choice(owner, "position_embedding", self.position_embedding, POSITION_EMBEDDINGS)
        if self.max_context is not None:
            check_positive_int(owner, "max_context", self.max_context)
            if self.memory_window != "rolling":
                raise ValueError(
                    f"MemoryConfig.max_context={self.max_context} needs memory_window='rolling' (a bounded model's "
                    f"context is num_memory_slots * chunk_size = {self.num_memory_slots * self.chunk_size})"
                )
        if self.pooling == "penultimate" and self.chunk_size < 2:
            raise ValueError(f"pooling='penultimate' needs chunk_size >= 2, got {self.chunk_size}")
        decoder = self.decoder_config
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "blank_token_id", "copy_delimiter_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < decoder.vocab_size:
                raise ValueError(f"MemoryConfig.{name}={value} is outside the vocabulary [0, {decoder.vocab_size})")
        decoder_positions = context_length(decoder)
        if decoder_positions is not None and decoder_positions < self.decoder_length:
            raise ValueError(
                f"the decoder sees num_memory_slots + chunk_size = {self.num_memory_slots} + {self.chunk_size} = "
                f"{self.decoder_length} positions, but decoder_config.max_position_embeddings is {decoder_positions}"
            )
        window = getattr(decoder, "sliding_window", None)
        if window is not None and getattr(decoder, "use_sliding_window", True) and window < self.decoder_length:
            raise ValueError(f"the decoder's sliding_window {window} is shorter than num_memory_slots + chunk_size = "
                             f"{self.decoder_length}: memory models need the whole chunk in the window")
        if decoder.model_type == "masked_mixer":
            if self.memory_layout != "fixed":
                raise ValueError(f"a masked_mixer decoder supports memory_layout='fixed' only, got {self.memory_layout!r}")
            if self.filler == "masked":
                raise ValueError("a masked_mixer decoder has no attention mask: use filler 'zeros', 'ones' or 'learned'")
        encoder = self.encoder_config
        if encoder is None:
            if self.freeze_encoder or self.fresh_encoder_embedding:
                raise ValueError("freeze_encoder / fresh_encoder_embedding need an encoder_config")
            return
        encoder_positions = context_length(encoder)
        if encoder_positions is not None and encoder_positions < self.chunk_size:
            raise ValueError(
                f"chunk_size {self.chunk_size} does not fit the encoder: encoder_config.max_position_embeddings "
                f"is {encoder_positions}"
            )
        if encoder.vocab_size != decoder.vocab_size:
            raise ValueError(
                f"encoder vocab_size {encoder.vocab_size} != decoder vocab_size {decoder.vocab_size}"
            )
        if encoder.hidden_size % self.compression:
            raise ValueError(
                f"compression {self.compression} must divide the encoder hidden_size {encoder.hidden_size}"
            )
