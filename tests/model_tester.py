"""Shared model checks (a small ModelTesterMixin): every family's tiny models run through all of them.

A family contributes `ModelCase`s in a `tests/cases_<family>.py` module (a module-level `CASES` list);
`all_cases()` discovers them, so adding a family needs no change here or in the export tests.
"""

import copy
import importlib
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import PreTrainedModel

TESTS_DIR = pathlib.Path(__file__).parent


@dataclass
class ModelCase:
    """A tiny model plus example inputs.

    `build()` returns a fresh, randomly initialised model; `inputs(batch)` returns a dict of forward
    kwargs (no labels) for `batch` rows whose rows are independent samples of equal length.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int], dict]
    auto_class: str = "AutoModelForCausalLM"
    output_key: str = "logits"
    labels_key: str | None = "labels"  # None: the model has no loss
    # False where inputs_embeds can't stand in for input_ids (a memory model's encoder needs token ids).
    supports_inputs_embeds: bool = True
    extra_forward_kwargs: dict = field(default_factory=dict)

    def __repr__(self):
        return self.name


def all_cases() -> list[ModelCase]:
    cases = []
    for path in sorted(TESTS_DIR.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        cases.extend(module.CASES)
    return cases


def seeded(seed: int = 0):
    torch.manual_seed(seed)


def run(model, inputs, **kwargs):
    model.eval()
    with torch.no_grad():
        return model(**inputs, **kwargs)


def check_shapes(case: ModelCase):
    """The main output is `[batch, seq_len, ...]`, aligned with `input_ids`."""
    seeded()
    model, inputs = case.build(), case.inputs(3)
    out = getattr(run(model, inputs), case.output_key)
    assert out.shape[:2] == inputs["input_ids"].shape, (out.shape, inputs["input_ids"].shape)
    assert torch.isfinite(out).all()


def check_loss_iff_labels(case: ModelCase):
    """`loss` is returned exactly when labels are given, and is finite and positive."""
    if case.labels_key is None:
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    assert run(model, inputs).loss is None
    out = run(model, inputs, **{case.labels_key: inputs["input_ids"]})
    assert out.loss is not None and out.loss.ndim == 0
    assert torch.isfinite(out.loss) and out.loss > 0


def check_save_load(case: ModelCase, tmp_path):
    """save_pretrained / from_pretrained (twice, as HF does) reproduces the outputs exactly."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    expected = getattr(run(model, inputs), case.output_key)
    first, second = tmp_path / "first", tmp_path / "second"
    model.save_pretrained(first)
    reloaded = type(model).from_pretrained(first)
    reloaded.save_pretrained(second)
    reloaded = type(model).from_pretrained(second)
    torch.testing.assert_close(getattr(run(reloaded, inputs), case.output_key), expected, rtol=0, atol=0)


def check_determinism(case: ModelCase):
    """Two eval-mode forwards give bit-identical outputs."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    a = getattr(run(model, inputs), case.output_key)
    b = getattr(run(model, inputs), case.output_key)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def check_batch_rows(case: ModelCase):
    """Each row of a batch gives the same output as the row run alone."""
    seeded()
    model, inputs = case.build(), case.inputs(3)
    batched = getattr(run(model, inputs), case.output_key)
    for row in range(3):
        single = {k: v[row : row + 1] if torch.is_tensor(v) else v for k, v in inputs.items()}
        alone = getattr(run(model, single), case.output_key)
        torch.testing.assert_close(alone[0], batched[row], rtol=1e-4, atol=1e-5)


def check_training_step(case: ModelCase):
    """One optimiser step changes every trainable parameter (no dead or unused parameters)."""
    if case.labels_key is None:
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert before, "the model has no trainable parameters"
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    loss = model(**inputs, **{case.labels_key: inputs["input_ids"]}).loss
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if n in before and torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated by a training step: {unchanged}"


def check_inputs_embeds(case: ModelCase):
    """`inputs_embeds=embed(input_ids)` gives the same output as `input_ids` (when supported)."""
    if not case.supports_inputs_embeds:
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    try:
        embeddings = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        return
    if embeddings is None:
        return
    expected = getattr(run(model, inputs), case.output_key)
    with torch.no_grad():
        embeds = embeddings(inputs["input_ids"])
    other = {k: v for k, v in inputs.items() if k != "input_ids"}
    got = getattr(run(model, {**other, "inputs_embeds": embeds}), case.output_key)
    torch.testing.assert_close(got, expected)


def check_config_round_trip(case: ModelCase, tmp_path):
    """to_dict/from_dict and save_pretrained/from_pretrained preserve the config exactly."""
    config = case.build().config
    cls = type(config)
    assert cls.from_dict(copy.deepcopy(config.to_dict())).to_dict() == config.to_dict()
    config.save_pretrained(tmp_path)
    assert cls.from_pretrained(tmp_path).to_dict() == config.to_dict()


def check_sub_configs(case: ModelCase, tmp_path):
    """A composite config declares its `sub_configs`, so `from_pretrained(attn_implementation=..., dtype=...)`
    reaches every inner model, `get_text_config()` is the decoder's, and tying set there ties the decoder
    (transformers' test_attn_implementation_composite_models and test_internal_model_config_and_subconfig_are_same)."""
    seeded()
    model = case.build()
    config = model.config
    inner_configs = [key for key in ("encoder_config", "decoder_config") if getattr(config, key, None) is not None]
    if not inner_configs:
        return
    assert set(inner_configs) <= set(config.sub_configs), f"undeclared sub-configs: {inner_configs}"
    text = config.get_text_config(decoder=True)
    assert text is config.decoder_config and text.num_hidden_layers >= 1
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path, attn_implementation="eager", dtype=torch.bfloat16)
    inner = [m for m in loaded.modules() if isinstance(m, PreTrainedModel) and m is not loaded]
    assert inner, "a composite model without inner transformers models"
    for module in inner:
        assert module.config._attn_implementation == "eager", type(module).__name__
        assert module.config.dtype == torch.bfloat16, type(module).__name__
        assert any(module.config is getattr(loaded.config, key) for key in config.sub_configs), type(module).__name__
    if case.auto_class == "AutoModelForCausalLM":
        config = copy.deepcopy(config)
        config.get_text_config().tie_word_embeddings = True
        tied = type(model)(config)
        assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight


ALL_CHECKS = [
    check_shapes,
    check_loss_iff_labels,
    check_save_load,
    check_determinism,
    check_batch_rows,
    check_training_step,
    check_inputs_embeds,
    check_config_round_trip,
    check_sub_configs,
]
