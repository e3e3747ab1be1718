"""Command-line options of the conversion commands (`memory-models export`, `convert`).

Kept apart from the implementations and importing only the standard library, so that `memory-models X --help`
answers without loading torch.
"""

from __future__ import annotations

import argparse

# Options renamed so that one spelling means one thing in every command: old spelling -> the one to use.
RENAMED_OPTIONS = {"--chunk": "--chunk-size", "--slots": "--memory-slots", "--vocab": "--vocab-size",
                   "--decoder": "--family"}  # --decoder: of `demo` only (readback's --decoder stays)


class _RenamedOption(argparse.Action):
    """An old spelling of an option: refused with one line naming the new one (exit 2), never taken silently (an
    abbreviation of the new spelling would be)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="?", help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(2, f"{parser.prog}: error: {option_string} was renamed {RENAMED_OPTIONS[option_string]}\n")


def refuse_renamed(parser: argparse.ArgumentParser, *old: str) -> None:
    """Refuse the old spellings `old` (keys of `RENAMED_OPTIONS`) in `parser`, which has their new ones."""
    for option in old:
        parser.add_argument(option, action=_RenamedOption)


def positive_int(text: str) -> int:
    """An argparse `type` for counts and sizes: a positive integer (0 and negative values are usage errors, never
    silently ignored or passed on)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_trust_remote_code(parser: argparse.ArgumentParser) -> None:
    """`--trust-remote-code`: the consent every command that loads a model or tokenizer asks for before it runs
    code shipped with a folder or Hub repo (`auto_map`) whose model type is not installed."""
    parser.add_argument("--trust-remote-code", action="store_true", help="run code shipped with a model or "
                        "tokenizer whose type is not installed (off: memory-models' own and transformers' types load "
                        "with the installed classes, anything else is refused)")


def export_parser() -> argparse.ArgumentParser:
    """The options of `memory-models export`."""
    parser = argparse.ArgumentParser(prog="memory-models export", description="Export a model as a Hub-ready "
                                     "folder: weights, config with auto_map, code, tokenizer, model card.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a saved model folder or Hub id")
    source.add_argument("--preset", help="a preset name: export a randomly initialised model")
    parser.add_argument("--tokenizer", help="tokenizer folder to include (default: the model folder's, if any)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="also upload the folder to this repo")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output folder that "
                        "memory-models did not create, or created as another kind (a training run, a bank, ...)")
    add_trust_remote_code(parser)
    parser.add_argument("--allow-missing-weights", action="store_true",
                        help="export a --model checkpoint with missing or unused tensors (missing ones stay random)")
    parser.add_argument("--decoder-only", action="store_true", help="export a memory model's decoder as its native "
                        "class (e.g. LlamaForCausalLM), loadable without trust_remote_code")
    parser.add_argument("--base-model", metavar="DIR_OR_HUB_ID", help="base model of a LoRA adapter --model folder "
                        "(default: the one recorded in adapter_config.json; the export holds the merged model); "
                        "otherwise the model card's base_model, the checkpoint this was converted from")
    parser.add_argument("--metrics", metavar="JSON", help="a training run's metrics.json for the model card "
                        "(default: for RUN/final, RUN/metrics.json if present)")
    parser.add_argument("--license", help="model card: Hub license id (e.g. apache-2.0)")
    return parser


def convert_parser() -> argparse.ArgumentParser:
    """The options of `memory-models convert`."""
    parser = argparse.ArgumentParser(prog="memory-models convert", description="Make a pretrained causal LM "
                                     "(Llama 3.2, Qwen, Mistral, Gemma, ...) the decoder of a memory model.")
    parser.add_argument("--decoder", required=True, metavar="PATH_OR_HUB_ID", help="pretrained causal LM")
    encoder = parser.add_argument_group("encoder (default: a fresh encoder of preset llama-3.2-1b-memory)")
    encoder.add_argument("--encoder-from", metavar="DIR", help="copy the encoder of this autoencoder/memory model")
    encoder.add_argument("--encoder-preset", metavar="NAME", help="preset whose encoder config to use")
    encoder.add_argument("--freeze-encoder", action="store_true", help="freeze the encoder (paper: frozen AE encoder)")
    parser.add_argument("--tokenizer", metavar="DIR", help="default: the decoder's tokenizer")
    parser.add_argument("--chunk-size", type=int, default=256, help="tokens per chunk L (paper: 256)")
    parser.add_argument("--memory-slots", type=int, default=4, help="memory slots S (paper: 4)")
    refuse_renamed(parser, "--chunk", "--slots")
    parser.add_argument("--filler", default="masked", help="empty-slot filler (default masked: no memories = "
                        "the pretrained decoder exactly)")
    parser.add_argument("--position-embedding", choices=("learned", "none"), default="learned",
                        help="learned (default): a zero-initialised embedding of each decoder position of a chunk, "
                        "so the decoder tells slots and chunk positions apart (the converted model still equals the "
                        "decoder); none: the paper's decoder input")
    parser.add_argument("--dtype", default="auto", help="auto (the checkpoint's), bfloat16, float32, ...")
    parser.add_argument("--copy-delimiter", metavar="TOKEN", help="copy delimiter token (default: Llama 3's "
                        "<|reserved_special_token_0|> if the tokenizer has it)")
    parser.add_argument("--output", required=True, help="output folder (Hub-ready)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output folder that "
                        "memory-models did not create, or created as another kind")
    add_trust_remote_code(parser)
    return parser
