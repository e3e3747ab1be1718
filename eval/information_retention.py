"""Information retention (paper §3, Tables 1-2): how much of its input does an encoder's embedding keep?

For each context length, the encoder (any of our checkpoints or any transformers base model: BERT,
Llama 3.2, Qwen3, ...) is frozen, its last-position embedding feeds a fresh decoder through the unroll
expansion, and the decoder is trained to reconstruct the input. The held-out loss, entropy ratio
`H_r = 1 - CE / ln V` and token accuracy measure what the embedding retained.

    memory-models retention --encoder bert-base-uncased --context 16 64 --steps 2000 \\
        --dataset python-docs --output retention.json      # also retention.png / .svg (matplotlib)

Differences from the paper's runs (Table 2: decoder 16 layers x 512, 40k-200k steps at global batch
32768 / n_ctx on FineWeb-edu) are only in the defaults, which are sized for a CPU; every one is a flag.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import AutoModel, AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from memory_models.configuration.presets import llama
from memory_models.conversion.loading import load_config, load_model, load_tokenizer
from memory_models.conversion.safe_io import CREATED_BY, check_result_file, write_text_atomic
from memory_models.eval.arguments import retention_parser
from memory_models.modeling_memory import IGNORE_INDEX, MemoryAutoencoder, capabilities
from memory_models.training.data.corpora import load_corpus
from memory_models.training.loop import fit
from memory_models.training.train import base_encoder  # noqa: F401  (also this module's API)
from memory_models.training.metrics import StreamingMetrics
from memory_models.training.plot import plot_beside, plot_retention, retention_title

logger = logging.getLogger(__name__)

HELD_OUT_EVERY = 5  # texts given as a list: every 5th is held out for evaluation


@dataclass(frozen=True)
class RetentionResult:
    """Held-out reconstruction metrics of one probe (one row of the paper's Tables 1-2)."""

    context: int
    loss: float
    entropy_ratio: float
    accuracy: float
    encoder: str
    steps: int
    eval_targets: int = 0


# ----------------------------------------------------------------------------- encoders
def load_encoder(encoder, *, trust_remote_code: bool = False,
                 allow_missing_weights: bool = False) -> tuple[PreTrainedModel, str]:
    """`(base encoder module, name)` from a module, a local folder or a Hub id (`conversion.loading.load_model`).

    A folder that does not exist, an unreadable weights file or missing shard, code shipped with the folder
    (without `trust_remote_code`), encoder tensors missing from the checkpoint (they would be random; unless
    `allow_missing_weights`) and NaN/inf weights are `ValueError`s; unused checkpoint tensors (heads the probe
    drops) are fine.
    """
    if not isinstance(encoder, (str, os.PathLike)):
        name = getattr(getattr(encoder, "config", None), "name_or_path", "") or type(encoder).__name__
        return base_encoder(encoder), name
    name = str(encoder)
    # The class the checkpoint was saved from (a causal LM's head loads with it, then is dropped here), so that
    # transformers has no unused tensor to report: the probe drops heads on purpose.
    config = load_config(name, trust_remote_code=trust_remote_code, option="--encoder")
    saved_as_lm = any(str(arch).endswith("ForCausalLM") for arch in getattr(config, "architectures", None) or ())
    auto_classes = (AutoModelForCausalLM, AutoModel) if saved_as_lm else (AutoModel, AutoModelForCausalLM)
    model, info = load_model(name, config=config, trust_remote_code=trust_remote_code, allow_missing=True,
                             option="--encoder", auto_classes=auto_classes, return_info=True)
    module = base_encoder(model)
    prefix = next((f"{path}." if path else "" for path, sub in model.named_modules() if sub is module), "")
    missing = sorted(key for key in info.get("missing_keys", ()) if key.startswith(prefix))
    if missing and not allow_missing_weights:
        raise ValueError(f"--encoder {name!r}: encoder tensors missing from the checkpoint (they would be random): "
                         f"{missing}. Pass --allow-missing-weights to probe it anyway.")
    return module, name


# ----------------------------------------------------------------------------- data
def load_texts(dataset, split: str, num_documents: int, seed: int = 0) -> list[str]:
    """Up to `num_documents` non-empty texts of `split` from a corpus name / path or a list of strings.

    A list is split deterministically: every `HELD_OUT_EVERY`-th text is `"test"`, the rest `"train"`.
    """
    if isinstance(dataset, (str, os.PathLike)):
        corpus = load_corpus(str(dataset), split, num_documents=num_documents, seed=seed)
        texts = (row["text"] for row in corpus)
    else:
        texts = list(dataset)
        held_out = texts[::HELD_OUT_EVERY]
        texts = held_out if split == "test" else [t for i, t in enumerate(texts) if i % HELD_OUT_EVERY]
    texts = [text for text in itertools.islice((t for t in texts if t and t.strip()), num_documents)]
    if not texts:
        raise ValueError(f"no {split!r} texts in dataset {dataset if isinstance(dataset, str) else 'list'}")
    return texts


def tokenize_texts(tokenizer, texts: Sequence[str], context: int, vocab_size: int,
                   pack: bool = False) -> dict[str, torch.Tensor]:
    """Tokenise (with the tokenizer's own special tokens), truncate / right-pad to `context`; or, with `pack`,
    concatenate the texts' tokens (no special tokens) and cut them into full rows of `context` (no padding, so the
    pooled last position is always a real token; the tail is dropped).

    Returns `input_ids`, `attention_mask` and `labels` (-100 at pads), each `[rows, context]`.
    """
    if pack:
        stream = [token for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for token in ids]
        rows = [stream[start : start + context] for start in range(0, len(stream) - context + 1, context)]
    else:
        rows = [ids[:context] for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"] if ids]
    if not rows:
        raise ValueError(f"no rows of {context} tokens in {len(texts)} texts")
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    input_ids = torch.full((len(rows), context), pad, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), context, dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    if input_ids.numel() and int(input_ids.max()) >= vocab_size:
        raise ValueError(f"token id {int(input_ids.max())} is outside the encoder vocabulary of {vocab_size}")
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ----------------------------------------------------------------------------- probe
def decoder_config(vocab_size: int, context: int, hidden: int, layers: int, heads: int, tokenizer) -> LlamaConfig:
    """The probe's fresh Llama decoder (Table 2 used 512 wide, 16 layers, 4 heads, intermediate 4d)."""
    return llama(hidden, layers, heads, vocab_size=vocab_size, positions=context, pad_token_id=tokenizer.pad_token_id,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def train_probe(model: MemoryAutoencoder, data: dict, *, steps: int, batch_size: int, lr: float, seed: int) -> None:
    """Train the probe's decoder through the package's training loop (`training.loop.fit`: AdamW, linear warmup over
    min(100, steps / 10) steps, then linear decay), on `data` reshuffled every epoch, on the model's device."""
    fit(model, data, steps=steps, batch_size=batch_size, learning_rate=lr, warmup_steps=min(100, max(1, steps // 10)),
        seed=seed, use_cpu=model.lm_head.weight.device.type == "cpu", logger=logger)


@torch.no_grad()
def evaluate_probe(model: MemoryAutoencoder, data: dict, batch_size: int) -> dict:
    """Streaming held-out CE (nats), `H_r` (ln V) and unshifted token accuracy over `data`."""
    model.eval()
    device = model.lm_head.weight.device
    metrics = StreamingMetrics(shift=False, vocab_size=model.config.vocab_size)
    for start in range(0, data["input_ids"].shape[0], batch_size):
        batch = {key: value[start : start + batch_size].to(device) for key, value in data.items()}
        metrics.update(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                       batch["labels"])
    return metrics.compute()


def measure_retention(
    encoder,
    tokenizer=None,
    *,
    contexts: Sequence[int] = (16, 64),
    dataset="python-docs",
    train_steps: int = 1000,
    train_documents: int | None = None,
    eval_documents: int = 200,
    batch_size: int = 16,
    lr: float = 2e-4,
    decoder_layers: int = 4,
    decoder_hidden: int = 256,
    decoder_heads: int = 4,
    pooling: str = "last",
    fresh_embedding: bool = False,
    pass_attention_mask: bool = False,
    pack: bool = False,
    device: str = "cpu",
    seed: int = 0,
    allow_missing_weights: bool = False,
    trust_remote_code: bool = False,
) -> list[RetentionResult]:
    """Train a fresh decoder on a frozen copy of `encoder` per context length and report held-out retention.

    Args:
        encoder: a module (any transformers model; heads and wrappers are stripped by `base_encoder`), a
            folder or a Hub id (loaded with `conversion.loading`).
        tokenizer: a tokenizer, a path, or `None` for the encoder's own folder. Special tokens are added as
            the tokenizer does by default (BERT's [CLS]/[SEP], Llama's BOS), as in the paper.
        contexts: input lengths `n_ctx` to probe (one probe each).
        dataset: a corpus name / path for `training.data.corpora.load_corpus` (train and test splits), or a list of
            texts (every 5th held out).
        train_steps / batch_size / lr: decoder training budget (AdamW, warmup, linear decay).
        train_documents: training texts to load (default `train_steps * batch_size`); eval_documents: held out.
        decoder_layers / decoder_hidden / decoder_heads: the fresh Llama decoder.
        pooling: `"last"` (paper), `"penultimate"` (causal mixers) or `"last_nonpad"`.
        fresh_embedding: the paper's in-house variant: a new trainable token embedding feeds the frozen blocks.
        pass_attention_mask: give the encoder the padding mask (the paper's LLM probes did not).
        pack: probe on full rows of concatenated texts instead of each text's first `n_ctx` tokens, right-padded
            (the distribution an autoencoder trained with `train --pack` saw).
        allow_missing_weights: probe a checkpoint whose encoder tensors are incomplete (see `load_encoder`).
        trust_remote_code: run code shipped with the encoder or tokenizer whose type is not installed.
    Returns:
        One [`RetentionResult`] per context.
    """
    encoder_module, name = load_encoder(encoder, allow_missing_weights=allow_missing_weights,
                                        trust_remote_code=trust_remote_code)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        if tokenizer is None and not isinstance(encoder, (str, os.PathLike)):
            raise ValueError("pass a tokenizer when the encoder is a module")
        tokenizer = load_tokenizer(str(tokenizer or encoder), option="--tokenizer" if tokenizer else "--encoder",
                                   trust_remote_code=trust_remote_code)
    vocab_size = encoder_module.config.vocab_size
    train_texts = load_texts(dataset, "train", train_documents or train_steps * batch_size, seed)
    eval_texts = load_texts(dataset, "test", eval_documents, seed)
    results = []
    for context in contexts:
        torch.manual_seed(seed)
        probe = MemoryAutoencoder.from_encoder(
            encoder_module, decoder_config(vocab_size, context, decoder_hidden, decoder_layers, decoder_heads,
                                           tokenizer),
            max_position_embeddings=context, expansion="unroll", pooling=pooling, freeze_encoder=True,
            fresh_encoder_embedding=fresh_embedding, pass_attention_mask_to_encoder=pass_attention_mask,
        ).to(device)
        train_probe(probe, tokenize_texts(tokenizer, train_texts, context, vocab_size, pack),
                    steps=train_steps, batch_size=batch_size, lr=lr, seed=seed)
        held_out = tokenize_texts(tokenizer, eval_texts, context, vocab_size, pack)
        if pack:  # long documents give many rows: the first `eval_documents` rows, as `memory-models train` does
            held_out = {key: value[:eval_documents] for key, value in held_out.items()}
        metrics = evaluate_probe(probe, held_out, batch_size)
        results.append(RetentionResult(context, metrics["loss"], metrics["entropy_ratio"], metrics["accuracy"],
                                       name, train_steps, metrics["targets"]))
        logger.info("n_ctx %d: %s", context, results[-1])
        del probe
    return results


def format_table(results: Sequence[RetentionResult]) -> str:
    """A Markdown table in the shape of the paper's Tables 1-2: `n_ctx | loss | H_r | accuracy`."""
    lines = ["| n_ctx | loss | H_r | accuracy |", "|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.context} | {r.loss:.3f} | {r.entropy_ratio:.3f} | {100 * r.accuracy:.2f}% |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`memory-models retention`: probe an encoder at several context lengths, print the table, optionally write
    JSON."""
    args = retention_parser().parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.output:
        check_result_file(args.output)  # before the probes train: never over a file of the user's
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = measure_retention(
        args.encoder, args.tokenizer, contexts=args.context, dataset=args.dataset, train_steps=args.steps,
        train_documents=args.train_documents, eval_documents=args.eval_documents, batch_size=args.batch_size,
        lr=args.lr, decoder_layers=args.decoder_layers, decoder_hidden=args.decoder_hidden,
        decoder_heads=args.decoder_heads, pooling=args.pooling, fresh_embedding=args.fresh_embedding,
        pass_attention_mask=args.pass_attention_mask, pack=args.pack, device=args.device, seed=args.seed,
        allow_missing_weights=args.allow_missing_weights, trust_remote_code=args.trust_remote_code,
    )
    print(f"Information retention of {args.encoder} on {args.dataset} ({args.steps} decoder steps per context)")
    print(format_table(results))
    if args.output:
        payload = {**CREATED_BY, "settings": {k: v for k, v in vars(args).items() if k != "output"},
                   "results": [asdict(r) for r in results]}
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        write_text_atomic(args.output, json.dumps(payload, indent=2))
        plot_beside(args.output, lambda stem: plot_retention({args.encoder: payload["results"]}, stem,
                                                             retention_title(payload["settings"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
