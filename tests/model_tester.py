"""Shared model checks (a small ModelTesterMixin): every family's tiny models run through all of them.

A family contributes `ModelCase`s in a `tests/cases_<family>.py` module (a module-level `CASES` list);
`all_cases()` discovers them, so adding a family needs no change here or in the export tests.
"""

import copy
import importlib
import pathlib
import re
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from transformers import Cache, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

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
    # Runs the transformers-contract checks (CONTRACT_CHECKS): one case per family and decoder kind keeps them fast.
    contract: bool = False
    prompt_length: int = 3  # generation checks: prompt tokens and new tokens (a memory model's prompt from
    max_new_tokens: int = 3  # inputs_embeds must fit one chunk, so its cases use fewer)

    def __repr__(self):
        return self.name


def all_cases() -> list[ModelCase]:
    cases = []
    for path in sorted(TESTS_DIR.glob("cases_*.py")):
        module = importlib.import_module(path.stem)
        cases.extend(module.CASES)
    return cases


def contract_cases() -> list[ModelCase]:
    return [case for case in all_cases() if case.contract]


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
]


# ---------------------------------------------------------------------------------------------------------------
# The contract of transformers' own common tests (test_modeling_common.py, generation/test_utils.py), mirrored for
# our families. Where a habit cannot apply, the check asserts the clear ValueError instead.


def is_causal_lm(case: ModelCase) -> bool:
    return case.auto_class == "AutoModelForCausalLM"


def attention_parts(model) -> dict:
    """`{output field: config}` of the parts whose attention weights the model reports."""
    config = model.config
    if config.model_type == "memory_autoencoder":
        return {"encoder_attentions": config.encoder_config, "decoder_attentions": config.decoder_config}
    return {"attentions": config.get_text_config(decoder=True)}


def hidden_state_parts(model) -> dict:
    """`{output field: config}` of the parts whose hidden states the model reports."""
    config = model.config
    if config.model_type == "memory_autoencoder":
        return {"encoder_hidden_states": config.encoder_config, "decoder_hidden_states": config.decoder_config}
    return {"hidden_states": config.get_text_config(decoder=True)}


def has_attention(config) -> bool:
    return config.model_type != "masked_mixer"


def assert_same_outputs(first, second):
    """Two output tuples hold the same tensors (nested tuples compared item by item; caches by type)."""
    assert len(first) == len(second), (len(first), len(second))
    for a, b in zip(first, second):
        if isinstance(a, (tuple, list)):
            assert_same_outputs(a, b)
        elif isinstance(a, Cache):
            assert type(a) is type(b)
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def check_return_dict_false(case: ModelCase):
    """`return_dict=False` gives the ModelOutput's tuple (transformers' test_model_outputs_equivalence)."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    extras = [{}, {"output_hidden_states": True}]
    if case.labels_key is not None:
        extras.append({case.labels_key: inputs["input_ids"], "output_hidden_states": True})
    for extra in extras:
        as_dict = run(model, inputs, return_dict=True, **extra)
        as_tuple = run(model, inputs, return_dict=False, **extra)
        assert isinstance(as_tuple, tuple), type(as_tuple)
        assert_same_outputs(as_tuple, as_dict.to_tuple())


def check_hidden_states(case: ModelCase):
    """`output_hidden_states` (argument or config) gives `num_hidden_layers + 1` states `[batch, seq_len, hidden]`
    per part, the last one feeding the head (transformers' test_hidden_states_output)."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    batch, length = inputs["input_ids"].shape
    expected = getattr(run(model, inputs), case.output_key)
    for how in ("argument", "config"):
        if how == "config":
            model.config.output_hidden_states = True
        out = run(model, inputs, **({"output_hidden_states": True} if how == "argument" else {}))
        for field_name, config in hidden_state_parts(model).items():
            states = getattr(out, field_name)
            assert states is not None and len(states) == config.num_hidden_layers + 1, (field_name, how)
            for state in states:
                assert state.shape == (batch, length, config.hidden_size), (field_name, state.shape)
        last = getattr(out, next(reversed(hidden_state_parts(model))))[-1]
        head = model.get_output_embeddings() if case.output_key == "logits" else torch.nn.Identity()
        torch.testing.assert_close(head(last), expected, rtol=1e-4, atol=1e-5)


def eager_copy(model):
    """The same weights with eager attention everywhere (the only kind that returns attention weights)."""
    eager = type(model)._from_config(copy.deepcopy(model.config), attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    return eager.eval()


def check_attentions(case: ModelCase):
    """With eager attention, `output_attentions` gives `num_hidden_layers` weights `[..., heads, q, k]` per part
    with attention, and the same outputs as SDPA (transformers' test_attention_outputs and
    test_eager_matches_sdpa_inference); a masked-mixer part refuses with a ValueError."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    parts = attention_parts(model)
    if not any(has_attention(config) for config in parts.values()):
        with pytest.raises(ValueError, match="masked mixer"):
            run(model, inputs, output_attentions=True)
        return
    eager = eager_copy(model)
    out = run(eager, inputs, output_attentions=True)
    for field_name, config in parts.items():
        weights = getattr(out, field_name)
        if not has_attention(config):
            assert weights is None, field_name
            continue
        assert len(weights) == config.num_hidden_layers, field_name
        for weight in weights:
            assert weight.shape[-3] == config.num_attention_heads and weight.shape[-1] == weight.shape[-2]
            torch.testing.assert_close(weight.sum(-1), torch.ones_like(weight.sum(-1)))  # softmax rows
    sdpa = getattr(run(model, inputs), case.output_key)
    torch.testing.assert_close(getattr(out, case.output_key), sdpa, rtol=1e-4, atol=1e-5)


def check_shift_labels(case: ModelCase):
    """A causal LM trains against `shift_labels` when given (the Trainer's pre-shifted targets under context
    parallelism): `labels` shifted by hand give the same loss, other `shift_labels` another one (transformers'
    test_causal_lm_loss_honors_shift_labels). The autoencoder's targets are not shifted: it refuses them."""
    if case.labels_key is None:
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    ids = inputs["input_ids"]
    shifted = F.pad(ids[:, 1:], (0, 1), value=-100)
    if not is_causal_lm(case):
        with pytest.raises(ValueError, match="shift_labels"):
            run(model, inputs, labels=ids, shift_labels=shifted)
        return
    loss = run(model, inputs, labels=ids).loss
    torch.testing.assert_close(run(model, inputs, labels=ids, shift_labels=shifted).loss, loss)
    torch.testing.assert_close(run(model, inputs, shift_labels=shifted).loss, loss)
    other = run(model, inputs, labels=ids, shift_labels=torch.roll(shifted, 1, dims=1)).loss
    assert (other - loss).abs() > 1e-4


def check_generation_kwargs_forwarded(case: ModelCase):
    """`prepare_inputs_for_generation` hands every model kwarg on to `forward` (transformers'
    test_prepare_inputs_for_generation_kwargs_forwards)."""
    if not is_causal_lm(case):
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    prepared = model.prepare_inputs_for_generation(inputs["input_ids"][:, :3], custom_arg=1, output_attentions=True)
    assert prepared["custom_arg"] == 1 and prepared["output_attentions"] is True


def check_gradient_checkpointing(case: ModelCase):
    """`gradient_checkpointing_enable()` recomputes the transformers `GradientCheckpointingLayer`s in the backward
    pass and leaves the gradients unchanged (transformers' test_training_gradient_checkpointing)."""
    if case.labels_key is None:
        return
    seeded()
    model, inputs = case.build(), case.inputs(2)
    model.train()
    labels = {case.labels_key: inputs["input_ids"]}
    seeded(1)  # the same dropout masks in both runs (the checkpoint replays the RNG state)
    model(**inputs, **labels).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert layers and all(layer.gradient_checkpointing for layer in layers)
    runs, checkpoint = [], layers[-1]._gradient_checkpointing_func

    def counting_checkpoint(function, *args, **kwargs):
        def counted(*inner_args, **inner_kwargs):
            runs.append(1)
            return function(*inner_args, **inner_kwargs)

        return checkpoint(counted, *args, **kwargs)

    layers[-1]._gradient_checkpointing_func = counting_checkpoint
    seeded(1)
    loss = model(**inputs, **labels).loss
    forward_runs = len(runs)  # once per decoder call (an RMT calls its decoder once per segment)
    loss.backward()
    assert forward_runs >= 1 and len(runs) == 2 * forward_runs, (forward_runs, len(runs))  # each recomputed once
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, msg=name)


def greedy(model, **kwargs):
    return model.generate(do_sample=False, pad_token_id=model.config.pad_token_id, **kwargs)


def check_generate_from_inputs_embeds(case: ModelCase):
    """`generate(inputs_embeds=...)` (with or without the prompt ids) generates the tokens of `generate(input_ids)`
    (transformers' test_generate_from_inputs_embeds)."""
    if not is_causal_lm(case):
        return
    seeded()
    model = case.build().eval()
    prompt = case.inputs(2)["input_ids"][:, : case.prompt_length]
    embeds = model.get_input_embeddings()(prompt).detach()
    expected = greedy(model, input_ids=prompt, max_new_tokens=case.max_new_tokens)
    from_embeds = greedy(model, inputs_embeds=embeds, max_new_tokens=case.max_new_tokens)
    assert torch.equal(from_embeds, expected[:, case.prompt_length :])
    assert torch.equal(greedy(model, input_ids=prompt, inputs_embeds=embeds, max_new_tokens=case.max_new_tokens),
                       expected)


def check_generate_continues_from_cache(case: ModelCase):
    """A forward returns `past_key_values` (models with a cache), and a second `generate` given the first one's
    cache continues exactly as one uninterrupted call (transformers' test_generate_continue_from_past_key_values).
    Without a cache (masked mixers), assisted decoding refuses with a ValueError."""
    if not is_causal_lm(case):
        return
    seeded()
    model = case.build().eval()
    prompt = case.inputs(2)["input_ids"][:, : case.prompt_length]
    has_cache = "past_key_values" in run(model, {"input_ids": prompt})
    first = greedy(model, input_ids=prompt, max_new_tokens=3, return_dict_in_generate=True)
    if not has_cache:
        assert first.past_key_values is None
        with pytest.raises(ValueError, match="assisted decoding"):
            greedy(model, input_ids=prompt, max_new_tokens=2, assistant_model=model)
        return
    expected = greedy(model, input_ids=prompt, max_new_tokens=6)
    continued = greedy(model, input_ids=first.sequences, past_key_values=first.past_key_values, max_new_tokens=3)
    assert torch.equal(continued, expected)


def check_generate_dict_outputs(case: ModelCase):
    """`generate(return_dict_in_generate=True, output_hidden_states=True, output_attentions=True)` returns one entry
    per step: the prompt's states `[batch, prompt, hidden]`, then one position per new token (transformers'
    _check_generate_outputs)."""
    if not is_causal_lm(case):
        return
    seeded()
    model = case.build().eval()
    config = model.config.get_text_config(decoder=True)
    prompt = case.inputs(2)["input_ids"][:, : case.prompt_length]
    attentions = has_attention(config)
    if attentions:
        model = eager_copy(model)
    out = greedy(model, input_ids=prompt, max_new_tokens=3, return_dict_in_generate=True, output_hidden_states=True,
                 output_attentions=attentions)
    cached = out.past_key_values is not None  # without a cache every step re-runs the whole prefix
    assert len(out.hidden_states) == 3
    for step, states in enumerate(out.hidden_states):
        length = case.prompt_length + step if step == 0 or not cached else 1
        assert len(states) == config.num_hidden_layers + 1
        assert states[-1].shape == (2, length, config.hidden_size), states[-1].shape
    if attentions:
        assert len(out.attentions) == 3 and all(len(step) == config.num_hidden_layers for step in out.attentions)
        assert out.attentions[-1][0].shape[:3] == (2, config.num_attention_heads, 1)


def check_hidden_state_selection(case: ModelCase):
    """`output_hidden_states` given an index or a list of indices (transformers' per-layer output capturing) returns
    exactly the states of `output_hidden_states=True` at those positions and `None` elsewhere, per part."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    full = run(model, inputs, output_hidden_states=True)
    for selection in ([0, -1], 1, (-2,)):
        selected = run(model, inputs, output_hidden_states=selection)
        for field_name in hidden_state_parts(model):
            states, reference = getattr(selected, field_name), getattr(full, field_name)
            count = len(reference)
            picked = {i % count for i in ([selection] if isinstance(selection, int) else selection)}
            assert len(states) == count, (field_name, selection)
            for index, (state, expected) in enumerate(zip(states, reference)):
                if index in picked:
                    torch.testing.assert_close(state, expected, rtol=0, atol=0, msg=f"{field_name}[{index}]")
                else:
                    assert state is None, (field_name, selection, index)


def check_retain_grad_hidden_states(case: ModelCase):
    """`retain_grad()` on a returned first hidden state (and, where the model returns its layers' own attention
    weights, the first attention weights) gets a gradient from the output: they are the tensors the output was
    computed from (transformers' test_retain_grad_hidden_states_attentions; an RMT's attention weights are its
    segments' stacked into one tensor, a copy)."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    parts = attention_parts(model)
    own_attentions = model.config.model_type != "recurrent_memory" and any(map(has_attention, parts.values()))
    model = (eager_copy(model) if own_attentions else model).train()
    out = model(**inputs, output_hidden_states=True, output_attentions=own_attentions)
    retained = [getattr(out, field_name)[0] for field_name in hidden_state_parts(model)]
    if own_attentions:
        retained += [getattr(out, name)[0] for name, config in parts.items() if has_attention(config)]
    for tensor in retained:
        tensor.retain_grad()
    out[0].flatten()[0].backward()
    assert all(tensor.grad is not None for tensor in retained), [tensor.grad is None for tensor in retained]


def check_dynamic_rope_scaling(case: ModelCase):
    """RoPE scaling set on the text (decoder) config: "dynamic" leaves the outputs of inputs within the model's
    positions unchanged, "linear" changes them (transformers' test_model_rope_scaling_from_config)."""
    seeded()
    model, inputs = case.build().eval(), case.inputs(1)
    text = model.config.get_text_config(decoder=True)
    if not getattr(text, "rope_parameters", None):
        return  # no rotary positions (masked mixers, BERT)
    expected = getattr(run(model, inputs), case.output_key)
    for kind in ("dynamic", "linear"):
        config = copy.deepcopy(model.config)
        config.get_text_config(decoder=True).rope_parameters = {
            "rope_type": kind, "factor": 10.0, "rope_theta": text.rope_parameters["rope_theta"]}
        scaled = type(model)(config).eval()
        scaled.load_state_dict(model.state_dict())
        got = getattr(run(scaled, inputs), case.output_key)
        if kind == "dynamic":
            torch.testing.assert_close(got, expected)
        else:
            assert not torch.allclose(got, expected, atol=1e-5), "linear RoPE scaling did not reach the decoder"


def check_resize_token_embeddings(case: ModelCase):
    """`resize_token_embeddings` grows and shrinks every token embedding of the model (an encoder's too) and the
    head, keeps the old rows, and every vocabulary size of the config follows: ids of the new rows are accepted
    (transformers' test_resize_tokens_embeddings)."""
    seeded()
    model, inputs = case.build(), case.inputs(2)
    vocab = model.config.get_text_config().vocab_size
    before = model.get_input_embeddings().weight.detach().clone()
    token_embeddings = [name for name, module in model.named_modules()
                        if isinstance(module, torch.nn.Embedding) and module.num_embeddings == vocab]
    for size in (vocab + 10, vocab - 15):
        model.resize_token_embeddings(size)
        sizes = {name: model.get_submodule(name).num_embeddings for name in token_embeddings}
        assert set(sizes.values()) == {size}, sizes
        assert model.config.vocab_size == model.config.get_text_config().vocab_size == size
        if case.output_key == "logits":
            assert model.get_output_embeddings().weight.shape[0] == size
        rows = min(size, vocab)
        torch.testing.assert_close(model.get_input_embeddings().weight[:rows].detach(), before[:rows])
        ids = inputs["input_ids"].clamp(max=size - 1)
        ids[:, 0] = size - 1  # a new (or the last kept) row
        out = getattr(run(model, {**inputs, "input_ids": ids}), case.output_key)
        assert out.shape[-1] == (size if case.output_key == "logits" else out.shape[-1]) and torch.isfinite(out).all()


def check_parallel_plans_name_existing_modules(case: ModelCase):
    """Every entry of the tensor- and pipeline-parallel plans names a module the model has (a plan naming a module
    that was removed, e.g. an unused embedding, breaks tensor-parallel loading)."""
    model = case.build()
    names = [name for name, _ in model.named_modules()]
    for plan in (model.tp_plan, model.pp_plan):
        for pattern in plan or {}:
            regex = re.escape(pattern).replace(r"\*", r"\d+")
            assert any(re.fullmatch(regex, name) for name in names), f"the plan names {pattern!r}, which is no module"


def check_generate_continues_from_inputs_embeds(case: ModelCase):
    """`generate(inputs_embeds=prompt + generated tokens, past_key_values=the first call's cache)` continues exactly
    as one uninterrupted call (transformers' test_generate_continue_from_inputs_embeds)."""
    if not is_causal_lm(case):
        return
    seeded()
    model = case.build().eval()
    prompt = case.inputs(2)["input_ids"][:, : case.prompt_length]
    embed = model.get_input_embeddings()
    new = case.max_new_tokens
    expected = greedy(model, input_ids=prompt, max_new_tokens=new + 1)[:, case.prompt_length :]
    first = greedy(model, inputs_embeds=embed(prompt).detach(), max_new_tokens=new, return_dict_in_generate=True)
    continued = torch.cat([embed(prompt), embed(first.sequences)], dim=1).detach()
    second = greedy(model, inputs_embeds=continued, past_key_values=first.past_key_values, max_new_tokens=1)
    assert torch.equal(torch.cat([first.sequences, second], dim=1), expected)


CONTRACT_CHECKS = [
    check_sub_configs,
    check_return_dict_false,
    check_hidden_states,
    check_attentions,
    check_shift_labels,
    check_generation_kwargs_forwarded,
    check_gradient_checkpointing,
    check_generate_from_inputs_embeds,
    check_generate_continues_from_cache,
    check_generate_dict_outputs,
    check_hidden_state_selection,
    check_retain_grad_hidden_states,
    check_dynamic_rope_scaling,
    check_resize_token_embeddings,
    check_parallel_plans_name_existing_modules,
    check_generate_continues_from_inputs_embeds,
]
