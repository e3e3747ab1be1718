"""`memory-models convert`: make a pretrained causal LM (Llama 3.2, Qwen, Mistral, Gemma, ...) the decoder of
a memory model (the paper's Llama-3.2-1B decoder: Fig. S6, Tables S1-S2) and write it as a Hub folder.

    memory-models convert --decoder unsloth/Llama-3.2-1B --encoder-preset llama-3.2-1b-memory \\
        --chunk-size 256 --memory-slots 4 --output runs/llama-memory
    memory-models convert --decoder LLAMA_DIR --encoder-from runs/ae/final --freeze-encoder --output runs/lm

Every shape is checked on the configs before any weight is read (encoder vocabulary vs tokenizer, encoder
widths/layers vs the preset, decoder vocabulary vs tokenizer). The decoder is loaded once, in the checkpoint's
dtype, with transformers' low-memory loading, and attached to a memory model built on the meta device, so
converting needs about one copy of the checkpoint in memory. The tokenizer is copied and its special ids go
into the config; the `masked` filler makes the model with no memories exactly the pretrained decoder.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence

import torch
from safetensors import safe_open

from memory_models.configuration import get_preset
from memory_models.conversion.arguments import convert_parser
from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion.loading import check_finite, load_config, load_model, load_tokenizer, weight_files
from memory_models.conversion.safe_io import check_target
from memory_models.modeling_memory import MemoryConfig, MemoryForCausalLM
from memory_models.modeling_memory.config_utils import check_decoder_config
from memory_models.modeling_memory.native_decoders import same_architecture

DEFAULT_ENCODER_PRESET = "llama-3.2-1b-memory"  # Fig. S6: encoder d=512, 16 layers, on the decoder's vocabulary
LLAMA3_DELIMITER = "<|reserved_special_token_0|>"  # the paper's copy delimiter on the Llama 3 tokenizer


def tokenizer_special_ids(tokenizer, delimiter: str | None = None) -> dict:
    """pad/bos/eos ids of `tokenizer` (pad = eos when it has none, as in the paper) and the copy delimiter.

    `delimiter` (a token string) defaults to `<|reserved_special_token_0|>` when the tokenizer has it; a
    tokenizer without it gets no delimiter (`None`).
    """
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    ids = {"pad_token_id": pad, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": eos}
    vocab = tokenizer.get_vocab()
    if delimiter is not None and delimiter not in vocab:
        raise ValueError(f"copy delimiter {delimiter!r} is not a token of the tokenizer")
    name = delimiter if delimiter is not None else (LLAMA3_DELIMITER if LLAMA3_DELIMITER in vocab else None)
    ids["copy_delimiter_token_id"] = vocab[name] if name is not None else None
    return ids


def encoder_config_for(decoder_config, tokenizer, special: dict, encoder_from=None, encoder_preset=None,
                       trust_remote_code: bool = False):
    """The encoder config: the preset's (on the decoder's vocabulary) and/or the saved model's, checked to agree."""
    vocab = decoder_config.vocab_size
    expected = None
    if encoder_preset is not None or encoder_from is None:
        name = encoder_preset or DEFAULT_ENCODER_PRESET
        ids = {k: v for k, v in special.items() if hasattr(get_preset(name), k)}  # the tokenizer's, not Llama 3's
        preset = get_preset(name, vocab_size=vocab, **ids)
        expected = getattr(preset, "encoder_config", None)
        if expected is None:
            raise ValueError(f"preset {name!r} ({preset.model_type}) has no encoder_config")
    if encoder_from is not None:
        saved = getattr(load_config(encoder_from, option="--encoder-from", trust_remote_code=trust_remote_code),
                        "encoder_config", None)
        if saved is None:
            raise ValueError(f"{encoder_from} holds no model with an encoder (no encoder_config in config.json)")
        if expected is not None:
            problems = same_architecture(expected, saved)
            if problems:
                raise ValueError(f"the encoder of {encoder_from} does not match preset {encoder_preset!r} "
                                 f"(preset != saved): {'; '.join(problems)}")
        expected = saved
    if expected.vocab_size != vocab or expected.vocab_size < len(tokenizer):
        raise ValueError(f"encoder vocabulary {expected.vocab_size} does not fit the decoder vocabulary {vocab} "
                         f"and the tokenizer ({len(tokenizer)} tokens)")
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(expected, name, special[name])
    return expected


def load_encoder_weights(encoder, folder) -> None:
    """Load the `encoder.*` tensors of the safetensors checkpoint in `folder` into `encoder` (strict); unreadable
    or missing files and NaN/inf tensors are refused by name (`conversion.loading`)."""
    folder = pathlib.Path(folder)
    weight_files(folder, "--encoder-from")
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({folder / name for key, name in weight_map.items() if key.startswith("encoder.")})
    else:
        files = [folder / "model.safetensors"]
    state = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            state.update({key[len("encoder."):]: handle.get_tensor(key) for key in handle.keys()
                          if key.startswith("encoder.")})
    if not state:
        raise ValueError(f"{folder} has no encoder.* weights")
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise ValueError(f"the encoder weights of {folder} do not fit: missing {missing}, unexpected {unexpected}")
    check_finite(encoder, folder, "--encoder-from")


def convert(decoder, *, encoder_from=None, encoder_preset=None, tokenizer=None, chunk_size: int = 256,
            num_memory_slots: int = 4, filler: str = "masked", freeze_encoder: bool = False, dtype="auto",
            copy_delimiter: str | None = None, trust_remote_code: bool = False, position_embedding: str = "learned",
            **config_kwargs):
    """Build the memory model of a pretrained decoder (folder or Hub id). Returns `(model, tokenizer)`.

    Args:
        decoder: folder or Hub id of a native decoder-only causal LM (`LlamaForCausalLM`, `Qwen3ForCausalLM`, ...).
        encoder_from: folder of a trained autoencoder / memory model whose encoder is copied.
        encoder_preset: preset whose encoder config defines a fresh encoder (default `llama-3.2-1b-memory`'s,
            on the decoder's vocabulary); with `encoder_from`, the saved encoder must match it.
        tokenizer: tokenizer folder (default: the decoder's).
        chunk_size, num_memory_slots, filler, freeze_encoder, position_embedding, **config_kwargs: `MemoryConfig`
            fields. `position_embedding="learned"` (the default) adds a zero-initialised embedding of each decoder
            position of a chunk: the converted model still gives the decoder's logits exactly, and training teaches
            the decoder where each memory and each chunk position is (an attention decoder reads memories several
            times faster with it).
        dtype: `"auto"` (the checkpoint's) or a torch dtype / its name.
        copy_delimiter: token string of the copy delimiter (default `<|reserved_special_token_0|>` if present).
        trust_remote_code: run code shipped with the decoder or tokenizer (`--trust-remote-code`).
    """
    decoder_config = load_config(decoder, option="--decoder", trust_remote_code=trust_remote_code)
    check_decoder_config(decoder_config)  # a ValueError naming the model_type before any weight is read
    tokenizer = load_tokenizer(tokenizer or decoder, option="--tokenizer" if tokenizer else "--decoder",
                               trust_remote_code=trust_remote_code)
    if decoder_config.vocab_size < len(tokenizer):
        raise ValueError(f"decoder vocabulary {decoder_config.vocab_size} is smaller than the tokenizer "
                         f"({len(tokenizer)} tokens)")
    special = tokenizer_special_ids(tokenizer, copy_delimiter)
    encoder_config = encoder_config_for(decoder_config, tokenizer, special, encoder_from, encoder_preset,
                                        trust_remote_code)
    fields = dict(chunk_size=chunk_size, num_memory_slots=num_memory_slots, filler=filler,
                  freeze_encoder=freeze_encoder, position_embedding=position_embedding, **{**special, **config_kwargs})
    MemoryConfig(encoder_config=encoder_config, decoder_config=decoder_config, **fields)  # validate before loading
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model_decoder = load_model(decoder, config=decoder_config, dtype=dtype, option="--decoder", allow_option=None,
                               trust_remote_code=trust_remote_code)
    model = MemoryForCausalLM.from_pretrained_decoder(model_decoder, encoder_config=encoder_config, **fields)
    if encoder_from is not None:
        load_encoder_weights(model.encoder, encoder_from)
    return model, tokenizer


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert and export (`memory-models convert`,
    `python -m memory_models.conversion.pretrained_decoder`)."""
    args = convert_parser().parse_args(argv)
    inputs = [("--decoder", args.decoder), ("--encoder-from", args.encoder_from), ("--tokenizer", args.tokenizer)]
    check_target(args.output, kind="converted", overwrite=args.overwrite, inputs=inputs)  # before loading
    model, tokenizer = convert(args.decoder, encoder_from=args.encoder_from, encoder_preset=args.encoder_preset,
                               tokenizer=args.tokenizer, chunk_size=args.chunk_size,
                               num_memory_slots=args.memory_slots, filler=args.filler,
                               freeze_encoder=args.freeze_encoder, dtype=args.dtype,
                               copy_delimiter=args.copy_delimiter, trust_remote_code=args.trust_remote_code,
                               position_embedding=args.position_embedding)
    folder = export_model(model, args.output, tokenizer, overwrite=args.overwrite, kind="converted", inputs=inputs)
    n = sum(p.numel() for p in model.parameters())
    print(f"converted {args.decoder} ({model.config.decoder_config.model_type}, {model.dtype}) into a memory model "
          f"of {n / 1e6:.1f}M parameters: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
