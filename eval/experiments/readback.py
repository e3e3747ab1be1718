"""`memory-models readback`: how fast does a decoder learn to read memories that are perfectly decodable?

The diagnostic behind docs/reproduce.md, "Why blank copy was slow". A memory model's encoder is replaced by an *oracle*: each
chunk's memory is a fixed, exactly decodable code of its tokens (token `t` at position `j` contributes a unit code
in a block of dimensions of its own, rotated by one random orthogonal matrix). Only the decoder trains, on blank
copy of random tokens of a small vocabulary, so whatever limits its held-out accuracy is the decoder's reading,
never the encoder or the data:

    memory-models readback --decoder llama --output runs/readback/llama.json
    memory-models readback --decoder mixer --kernel 8 --output runs/readback/mixer.json
    memory-models readback --decoder llama --positional-blanks --output runs/readback/llama-positions.json

`--positional-blanks` gives every blank position its own input token: the decoder then knows which token of the
memory it must emit at each position without working it out from relative positions, which isolates that cost.
`--position-embedding learned` is the model's own answer to it (a learned embedding of each slot and chunk
position, `MemoryConfig.position_embedding`), and `--memory-scale` tests the scale of memories against token
embeddings:

    memory-models readback --decoder llama --position-embedding learned --output runs/readback/llama-learned.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, TrainerCallback

from memory_models.configuration.presets import llama
from memory_models.conversion.safe_io import CREATED_BY, check_result_file, write_text_atomic
from memory_models.eval.experiments.arguments import readback_parser
from memory_models.modeling_memory import MaskedMixerConfig, MemoryConfig, MemoryForCausalLM
from memory_models.training.loop import BatchStream, fit
from memory_models.training.metrics import token_accuracy
from memory_models.training.objectives.batch import CopySettings
from memory_models.training.objectives.copy import copy_batch

BOS, BLANK, EOS, DELIMITER, FIRST_TOKEN = 0, 1, 2, 3, 4  # random tokens are FIRST_TOKEN .. vocab-1


def oracle_codes(vocab: int, chunk: int, hidden: int, generator: torch.Generator) -> torch.Tensor:
    """`[chunk, vocab, hidden]`: position j's tokens get unit codes in dimensions j*hidden/chunk .. (j+1)*hidden/chunk,
    all rotated by one random orthogonal matrix (so no dimension is a token's own)."""
    if hidden % chunk:
        raise ValueError(f"--hidden {hidden} must be a multiple of --chunk-size {chunk} (one block of dimensions "
                         "each)")
    block = hidden // chunk
    codes = torch.nn.functional.normalize(torch.randn(vocab, block, generator=generator), dim=-1)
    table = torch.zeros(chunk, vocab, hidden)
    for j in range(chunk):
        table[j, :, j * block : (j + 1) * block] = codes
    rotation = torch.linalg.qr(torch.randn(hidden, hidden, generator=generator))[0]
    return torch.einsum("jvd,ed->jve", table, rotation) * math.sqrt(hidden / chunk)


def build(args) -> MemoryForCausalLM:
    """A memory model whose encoder is the oracle (its own encoder is never run) and a fresh decoder."""
    special = dict(pad_token_id=BLANK, bos_token_id=BOS, eos_token_id=EOS)
    width = args.slots + args.chunk

    def llama_of(positions: int) -> LlamaConfig:
        return llama(args.hidden, args.layers, args.heads, vocab_size=args.vocab, positions=positions, **special)

    decoder = llama_of(width) if args.decoder == "llama" else MaskedMixerConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers, max_position_embeddings=width,
        kernel_size=args.kernel, **special)
    config = MemoryConfig(llama_of(args.chunk), decoder, chunk_size=args.chunk, num_memory_slots=args.slots,
                          filler="ones", blank_token_id=BLANK, copy_delimiter_token_id=DELIMITER,
                          copy_delimiter_length=3, freeze_encoder=True, position_embedding=args.position_embedding,
                          **special)
    model = MemoryForCausalLM(config)
    codes = oracle_codes(args.vocab, args.chunk, args.hidden, torch.Generator().manual_seed(1234 + args.seed))
    positions = torch.arange(args.chunk)

    def oracle(chunk_ids: torch.LongTensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        return codes[positions[None, :], chunk_ids].sum(1) * (args.memory_scale / math.sqrt(args.chunk))

    model._encode_chunks = oracle  # the model's own encoder is never run
    return model


def blank_copy_rows(args, rows: int, generator: torch.Generator) -> dict:
    ids = torch.randint(FIRST_TOKEN, args.vocab, (rows, args.slots * args.chunk), generator=generator)
    batch = copy_batch(ids, settings=CopySettings(blank=True, blank_token_id=BLANK, delimiter_token_id=DELIMITER))
    batch.pop("stream_ids")
    if args.positional_blanks:  # each blank position gets an input token of its own
        half = ids.shape[1] // 2
        batch["input_ids"][:, half + 3 :] = FIRST_TOKEN + torch.arange(half - 3) % (args.vocab - FIRST_TOKEN)
    return batch


@torch.no_grad()
def accuracy(model, batch: dict) -> float:
    model.eval()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    model.train()
    return token_accuracy(logits, batch["labels"])  # position p predicts label p + 1


class HeldOutAccuracy(TrainerCallback):
    """Held-out blank-copy `accuracy` every `every` steps and at the last one: `points` gets `[step, accuracy]`."""

    def __init__(self, model, held_out: dict, every: int, seed: int):
        self.model, self.held_out, self.every, self.seed = model, held_out, every, seed
        self.points, self.start = [], time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if step % self.every == 0 or step == state.max_steps:
            self.points.append([step, round(accuracy(self.model, self.held_out), 4)])
            print(f"seed {self.seed} step {step}: held-out blank copy {self.points[-1][1]:.3f} "
                  f"({time.perf_counter() - self.start:.0f} s)", flush=True)


def run(args) -> dict:
    """Train the decoder for `args.steps` steps per seed through the package's training loop (`training.loop.fit`:
    AdamW, warmup over steps / 20, linear decay), on fresh blank-copy rows every step; held-out blank-copy accuracy
    every `args.eval_every`."""
    if args.threads:
        torch.set_num_threads(args.threads)
    curves = {}
    for seed in range(args.seeds):
        args.seed = seed
        torch.manual_seed(seed)
        model = build(args)
        generator = torch.Generator().manual_seed(10_000 + seed)
        held_out = blank_copy_rows(args, 512, torch.Generator().manual_seed(20_000 + seed))
        evaluation = HeldOutAccuracy(model, held_out, args.eval_every, seed)
        fit(model, BatchStream(lambda: blank_copy_rows(args, args.batch_size, generator)), steps=args.steps,
            batch_size=args.batch_size, learning_rate=args.learning_rate, warmup_steps=max(1, args.steps // 20),
            seed=seed, use_cpu=True, callbacks=[evaluation])
        curves[seed] = evaluation.points
    final = [points[-1][1] for points in curves.values()]
    settings = {k: v for k, v in vars(args).items() if k not in ("seed", "func")}
    return {"settings": settings, "curves": curves, "final": final, "mean": sum(final) / len(final)}


def main(argv=None) -> int:
    args = readback_parser().parse_args(argv)
    if args.output:
        check_result_file(args.output, beside=())  # new, or a result of ours (a rerun replaces it)
    result = {**CREATED_BY, **run(args)}
    print(f"{args.decoder} decoder{' (positional blanks)' if args.positional_blanks else ''}: held-out blank copy "
          f"after {args.steps} steps: {', '.join(f'{v:.3f}' for v in result['final'])} (mean {result['mean']:.3f})")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.output, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
