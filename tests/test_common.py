"""Runs every shared check of `model_tester` over every registered tiny model."""

import inspect

import pytest

from model_tester import ALL_CHECKS, CONTRACT_CHECKS, all_cases, contract_cases

CASES = all_cases()


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_common(case, check, tmp_path):
    """Shape, loss, save/load, determinism, batching, training-step and config checks."""
    if "tmp_path" in inspect.signature(check).parameters:
        check(case, tmp_path)
    else:
        check(case)


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", contract_cases(), ids=repr)
def test_transformers_contract(case, check, tmp_path):
    """What transformers' own common tests ask of every model (outputs, configs, losses, checkpointing,
    generation), on one tiny model per family and decoder kind."""
    if "tmp_path" in inspect.signature(check).parameters:
        check(case, tmp_path)
    else:
        check(case)
