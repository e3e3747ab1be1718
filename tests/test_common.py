"""Runs every shared check of `model_tester` over every registered tiny model."""

import inspect

import pytest

from model_tester import ALL_CHECKS, all_cases

CASES = all_cases()


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_common(case, check, tmp_path):
    """Shape, loss, save/load, determinism, batching, training-step and config checks."""
    if "tmp_path" in inspect.signature(check).parameters:
        check(case, tmp_path)
    else:
        check(case)
