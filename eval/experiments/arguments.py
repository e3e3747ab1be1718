"""Command-line options of the experiments (`memory-models demo`, `reproduce`, `readback`, `launcher-check`).

Kept apart from the implementations and importing only the standard library, so that `--help` answers without
loading torch.
"""

from __future__ import annotations

import argparse

from memory_models.conversion.arguments import refuse_renamed



DEMO_FAMILIES = ("memory-transformer", "memory-mixer")


def demo_parser() -> argparse.ArgumentParser:
    """The options of `memory-models demo`."""
    parser = argparse.ArgumentParser(prog="memory-models demo", description="The main job, offline on 2 CPU cores: "
                                     "an autoencoder, then a memory model over its frozen encoder that learns to read "
                                     "held-out text back from its memories, beside its no-memory control, exported, "
                                     "reloaded without this package, and generating.")
    parser.add_argument("--output-dir", default="memory-demo")
    parser.add_argument("--family", choices=DEMO_FAMILIES, default="memory-transformer", help="the memory "
                        "transformer (the paper's: Llama encoder and decoder, the decoder with learned slot and chunk "
                        "positions) or the memory mixer (masked mixers whose kernels cover chunk and window)")
    parser.add_argument("--autoencoder-steps", type=int, help="steps of the chunk autoencoder (default: the "
                        "family's, 1500 transformer / 1000 mixer)")
    parser.add_argument("--steps", type=int, help="steps of the memory model and of its control (default: the "
                        "family's, 1000 for both)")
    parser.add_argument("--learning-rate", type=float, help="default: the family's, 2e-3 transformer / 6e-3 mixer")
    parser.add_argument("--hidden", type=int, default=128, help="encoder and decoder width")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--memory-slots", type=int, default=4, help="memory slots (context = chunk size x slots)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab-size", type=int, default=2048, help="tokenizer trained for the demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", help="what the reloaded model generates from (default: the held-out passage's "
                        "first half and the copy delimiter: the model writes the passage back)")
    parser.add_argument("--max-new-tokens", type=int, help="default: the passage's copied tokens (24 with --prompt)")
    parser.add_argument("--jobs", type=int, choices=(1, 2), help="2: the no-memory control trains in a second "
                        "process beside the autoencoder, one thread each (default: 2 where 2 cores are free to this "
                        "process, else 1: every model after the other)")
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model (smoke test)")
    refuse_renamed(parser, "--chunk", "--slots", "--vocab", "--decoder")
    return parser


REPRODUCE_PARTS = ("table1", "fig4d", "table3", "table4", "all")


def readback_parser() -> argparse.ArgumentParser:
    """The options of `memory-models readback`."""
    parser = argparse.ArgumentParser(prog="memory-models readback", description="How fast does a decoder learn to "
                                     "read perfectly decodable (oracle) memories? Blank copy of random tokens; only "
                                     "the decoder trains; held-out accuracy against step.")
    parser.add_argument("--decoder", choices=("llama", "mixer"), default="llama")
    parser.add_argument("--kernel", type=int, default=1, help="mixer decoder's kernel (1: the paper's; the chunk "
                        "size: a position-specific read)")
    parser.add_argument("--positional-blanks", action="store_true",
                        help="give every blank position an input token of its own (isolates locating the token)")
    parser.add_argument("--position-embedding", choices=("none", "learned"), default="none",
                        help="the memory model's decoder positions: none (the paper's: rotary only) or learned (a "
                        "learned embedding of each slot and chunk position added to the decoder's input)")
    parser.add_argument("--memory-scale", type=float, default=1.0,
                        help="multiply the oracle memories (norm sqrt(hidden / chunk)) by this: their scale against "
                        "the token embeddings' (initialised with std 0.02)")
    # `dest`: the names `build` and the saved settings use
    parser.add_argument("--vocab-size", dest="vocab", type=int, default=64)
    parser.add_argument("--chunk-size", dest="chunk", type=int, default=8)
    parser.add_argument("--memory-slots", dest="slots", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--output", help="JSON of the curves (a new file, or one this command wrote)")
    refuse_renamed(parser, "--chunk", "--slots", "--vocab")
    return parser


def reproduce_parser() -> argparse.ArgumentParser:
    """The options of `memory-models reproduce`."""
    parser = argparse.ArgumentParser(prog="memory-models reproduce", description="The paper's effects on held-out "
                                     "data: Table 1 (information retention), Fig. 4(d) (blank copy through frozen "
                                     "encoders), Table 3 (combined vs causal objective), Table 4 (records "
                                     "extraction), each trained once and measured over several seeds.")
    parser.add_argument("part", choices=REPRODUCE_PARTS, help="which part (all: every part, each model trained once)")
    parser.add_argument("--output-dir", required=True, help="JSON, Markdown, pictures, models/ and runs/ go here")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (rows give mean and sd over them)")
    parser.add_argument("--scale", choices=("small", "paper", "tiny"), default="small",
                        help="small: 2 layers x 128, minutes per model on 2 CPU cores; paper: the paper's sizes (a GPU "
                        "job); tiny: a one-minute smoke test of the pipeline (its numbers mean nothing)")
    parser.add_argument("--family", choices=("memory-mixer", "memory-transformer"),
                        help="the memory model of Fig. 4(d), Table 3 and Table 4 (default: the paper's memory "
                        "transformer; at scale tiny and paper Fig. 4(d) also runs the mixer)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--jobs", type=int, help="seeds trained side by side (default: all on a CPU, 1 on a GPU)")
    return parser


def launcher_check_parser() -> argparse.ArgumentParser:
    """The options of `memory-models launcher-check`."""
    parser = argparse.ArgumentParser(prog="memory-models launcher-check", description="Check that a run's numbers "
                                     "do not depend on the launcher (one process, accumulation, torchrun, "
                                     "accelerate).")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--preset", default="memory-transformer-tiny")
    parser.add_argument("--objective", default="combined")
    parser.add_argument("--context", type=int, help="tokens per row (default: the model's context)")
    parser.add_argument("--steps", type=int, default=2)
    return parser
