"""Configuration of the recurrent memory baseline (Bulatov et al. 2022; the RMT baseline of Badger 2026, Fig. S5)."""

from transformers import AutoConfig, PretrainedConfig

from .capabilities import Capabilities
from .config_utils import (
    OWN_MODEL_TYPES,
    RequiredFieldsMixin,
    build_sub_config,
    check_choice,
    check_positive_int,
    context_length,
    keep_sub_config_implementations,
    paper_llama,
)

RECURRENT_FILLERS = ("ones", "zeros", "learned")
WRITE_POSITIONS = ("append", "last_token")


class RecurrentMemoryConfig(RequiredFieldsMixin, PretrainedConfig):
    r"""
    Configuration for [`RecurrentMemoryForCausalLM`], the recurrent memory transformer (RMT) baseline.

    Segments of `chunk_size` tokens are processed one after the other by the same decoder; memory tokens
    read at the start of a segment are written at its end and carried (with gradients) to the next one.

    Args:
        decoder_config (`dict` or `PretrainedConfig`, *optional*):
            `llama` or `masked_mixer` decoder. Defaults to the paper's Fig. S5 size (Llama d=512, 16 layers).
        chunk_size (`int`, *optional*, defaults to 256): tokens per segment.
        max_segments (`int`, *optional*, defaults to 4): segments of the effective context
            (`max_position_embeddings = max_segments * chunk_size`).
        num_memory_tokens (`int`, *optional*, defaults to 1): memory tokens per segment (paper: 1), read in front
            of the segment's tokens and written after them. (Not `num_memory_slots`: in [`MemoryConfig`] that counts
            context chunks.)
        filler (`str`, *optional*, defaults to `"ones"`): the memory the first segment reads: `"ones"` (paper
            transformer), `"zeros"` (paper mixer) or `"learned"`.
        (Configs saved before hold `num_memory_slots` or `memory_init`: they are read as these two.)
        write_position (`str`, *optional*, defaults to `"append"`):
            `"append"`: write slots follow the segment's tokens (Bulatov et al.);
            `"last_token"`: the paper's variant, which overwrites the last token's embedding with the memory.
        bptt_segments (`int`, *optional*): truncate backpropagation through memories to this many
            segments; `None` = full BPTT (paper).
        pad_token_id / bos_token_id / eos_token_id (`int`, *optional*): special tokens.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of new layers.
        use_cache (`bool`, *optional*, defaults to `True`): `generate()` keeps a `RecurrentMemoryCache` (each new
            token recomputes only its segment); `False` recomputes the whole prefix per token (same tokens).
    """

    model_type = "recurrent_memory"
    capabilities = Capabilities(reads_memory=True, native=False)
    sub_configs = {"decoder_config": AutoConfig}
    keys_to_ignore_at_inference = ["past_key_values"]  # a forward returns its cache (use_cache); the Trainer's
    # evaluation keeps it out of the predictions
    required_fields = ("decoder_config", "chunk_size", "max_segments")

    def __init__(
        self,
        decoder_config=None,
        chunk_size: int = 256,
        max_segments: int = 4,
        num_memory_tokens: int = 1,
        filler: str = "ones",
        write_position: str = "append",
        bptt_segments: int | None = None,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = 0,
        eos_token_id: int | None = 1,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        **kwargs,
    ):
        for derived in ("vocab_size", "hidden_size", "max_position_embeddings"):
            kwargs.pop(derived, None)
        # Saved configs: num_memory_slots (this field's name for a while; it means chunks in MemoryConfig), and
        # memory_init (the filler's first name).
        num_memory_tokens = kwargs.pop("num_memory_slots", num_memory_tokens)
        filler = kwargs.pop("memory_init", filler)
        if decoder_config is None:
            decoder_config = paper_llama(512, 16, positions=2 * num_memory_tokens + chunk_size)
        self.decoder_config = build_sub_config(decoder_config, "decoder_config", OWN_MODEL_TYPES)
        self.chunk_size = chunk_size
        self.max_segments = max_segments
        self.num_memory_tokens = num_memory_tokens
        self.filler = filler
        self.write_position = write_position
        self.bptt_segments = bptt_segments
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.vocab_size = self.decoder_config.vocab_size
        self.hidden_size = self.decoder_config.hidden_size
        self.max_position_embeddings = max_segments * chunk_size if isinstance(chunk_size, int) else None
        self._validate()
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**keep_sub_config_implementations(kwargs))

    def get_text_config(self, decoder=None, encoder=None) -> PretrainedConfig:
        """The decoder's config: the one model that reads and writes the text."""
        return self.decoder_config

    @property
    def segment_length(self) -> int:
        """Decoder positions per segment: read slots, tokens and (for `append`) write slots."""
        write = self.num_memory_tokens if self.write_position == "append" else 0
        return self.num_memory_tokens + self.chunk_size + write

    def _validate(self):
        owner = "RecurrentMemoryConfig"
        for name in ("chunk_size", "max_segments", "num_memory_tokens"):
            check_positive_int(owner, name, getattr(self, name))
        check_choice(owner, "filler", self.filler, RECURRENT_FILLERS)
        check_choice(owner, "write_position", self.write_position, WRITE_POSITIONS)
        if self.bptt_segments is not None:
            check_positive_int(owner, "bptt_segments", self.bptt_segments)
        if self.write_position == "last_token" and self.num_memory_tokens != 1:
            raise ValueError(f"write_position='last_token' supports num_memory_tokens=1, got {self.num_memory_tokens}")
        positions = context_length(self.decoder_config)
        if positions is not None and positions < self.segment_length:
            raise ValueError(
                f"the decoder sees {self.segment_length} positions per segment, but decoder_config accepts {positions}"
            )
