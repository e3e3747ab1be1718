"""Training steps per objective: the memory model's decoder on the chunks that have targets only, against every chunk.

`python -m memory_models.eval.benchmarks objectives [--quick]`. In training with labels, `MemoryForCausalLM` runs its
decoder only on the chunks with at least one target (`decode_only_chunks_with_targets`): a copy or blank-copy row's
first half has none but its last position. Both settings get the same batch, the same loss and the same gradients
(checked here on every case before timing); the baseline is the same model with the attribute off. One sample = one
training step (forward, backward, AdamW step); the two settings alternate over the repeats, and the speed-up is the
median and min-max of the per-round ratios (`timing.paired_ratio`). Cases: the `small` scale's memory transformer and
memory mixer (`*-small` presets, 16-token chunks x 4, batch 32, as `reproduce` trains them) with the objectives of the
curriculum, the encoder frozen where the curriculum freezes it (blank copy, copy) and trainable for `combined` and
`clm` (Table 3's all-trainable row; `clm` has a target in every chunk, so nothing is skipped: a check that the
switch costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from memory_models.configuration import build_model, get_preset
from memory_models.eval.benchmarks.reports import fmt_spread
from memory_models.eval.benchmarks.timing import autocast, paired_ratio, progress, sample_seconds, settings, spread
from memory_models.training.objectives import get_objective
from memory_models.training.objectives.batch import CopySettings


@dataclass(frozen=True)
class Case:
    """One timed case: a preset, an objective and whether the encoder is frozen."""

    preset: str
    objective: str
    freeze_encoder: bool


CASES = tuple(Case(preset, objective, freeze) for preset in ("memory-transformer-small", "memory-mixer-small")
              for objective, freeze in (("blank_copy", True), ("copy", True), ("combined", False), ("clm", False)))
QUICK_CASES = tuple(replace(case, preset=case.preset.replace("-small", "-tiny")) for case in CASES)
SETTINGS = {"only chunks with targets": True, "every chunk": False}


def _batch(model, objective: str, rows: int, seed: int = 0) -> dict:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    context = config.chunk_size * config.num_memory_slots
    ids = torch.randint(5, config.vocab_size, (rows, context), generator=generator)
    return get_objective(objective).build_batch(ids, settings=CopySettings.from_config(config),
                                                pad_token_id=config.pad_token_id)


def case_model_and_batch(case: Case, rows: int, device: str = "cpu", vocab_size: int | None = None) -> tuple:
    """The model of `case` (built after seed 0, its encoder frozen as the case says; the preset's vocabulary unless
    `vocab_size` is given) in training mode on `device`, and its batch of `rows` random rows there."""
    torch.manual_seed(0)
    config = get_preset(case.preset, **({} if vocab_size is None else {"vocab_size": vocab_size}))
    config.freeze_encoder = case.freeze_encoder
    model = build_model(config).to(device).train()
    return model, {key: value.to(device) for key, value in _batch(model, case.objective, rows).items()}


def _loss_and_grads(model, batch, only_targets: bool):
    model.decode_only_chunks_with_targets = only_targets  # the instance's, not the class's
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def measure(case: Case, rows: int, repeats: int, warmup: int, device: str, dtype: str) -> dict:
    """Steps/s of both settings on one batch, after checking they give the same loss and gradients."""
    model, batch = case_model_and_batch(case, rows, device)
    decoder_rows = []  # chunks decoded by each of the two forwards
    hook = model.decoder.model.register_forward_pre_hook(
        lambda module, args, kwargs: decoder_rows.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        (loss, grads), (all_loss, all_grads) = (_loss_and_grads(model, batch, flag) for flag in SETTINGS.values())
    finally:
        hook.remove()
    torch.testing.assert_close(loss, all_loss)  # a mismatch stops the run: the figures are never written
    for grad, all_grad in zip(grads, all_grads, strict=True):
        torch.testing.assert_close(grad, all_grad)
    decoded, total = decoder_rows
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(only_targets):
        def run():
            model.decode_only_chunks_with_targets = only_targets
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
        return run

    progress(f"{case.preset}, {case.objective}: {decoded} of {total} chunks decoded")
    seconds = sample_seconds({name: step(flag) for name, flag in SETTINGS.items()}, repeats, warmup, device,
                             label=f"{case.preset} {case.objective}")
    steps = {name: [1.0 / s for s in values] for name, values in seconds.items()}
    only, every = (steps[name] for name in SETTINGS)
    return {**vars(case), "batch_rows": batch["input_ids"].shape[0], "chunks_decoded": decoded, "chunks": total,
            "steps_per_s": {name: spread(values) for name, values in steps.items()},
            "speedup": paired_ratio(only, every)}


def format_table(result: dict) -> str:
    two = lambda value: f"{value:.2f}"  # noqa: E731
    lines = ["training steps/s, the decoder on the chunks with targets only vs on every chunk (median (min-max); "
             "the same loss and gradients, checked)",
             "| preset | objective | encoder | chunks decoded | steps/s, only with targets | steps/s, every chunk | "
             "speed-up |", "|---|---|---|---:|---:|---:|---:|"]
    for case in result["cases"]:
        only, every = (case["steps_per_s"][name] for name in SETTINGS)
        lines.append(f"| {case['preset']} | {case['objective']} | {'frozen' if case['freeze_encoder'] else 'trained'}"
                     f" | {case['chunks_decoded']} / {case['chunks']} | {fmt_spread(only, number=two)} | "
                     f"{fmt_spread(every, number=two)} | {fmt_spread(case['speedup'], number=two)} |")
    return "\n".join(lines)


def run(args) -> dict:
    """Every case of `CASES` (`QUICK_CASES`: the tiny presets, batch 2)."""
    repeats = args.repeats or (1 if args.quick else 7)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    rows = 2 if args.quick else 32
    cases = [measure(case, rows, repeats, warmup, args.device, args.dtype)
             for case in (QUICK_CASES if args.quick else CASES)]
    samples = {"step": f"{warmup} warm-up + {repeats} timed steps per setting and case, interleaved; one sample = one "
                       f"training step of {rows} rows (combined: {2 * rows}, its causal and copy rows)"}
    return {"benchmark": "objectives", "settings": settings(args, samples=samples), "cases": cases}
