"""The check that a folder memory-models wrote gives its tokenizer the way a user loads it: plain
`AutoTokenizer.from_pretrained(folder)`, with no prompt, no code shipped with the folder and no warning."""

import builtins
import logging
import sys
import warnings

from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

import memory_models.modeling_memory  # noqa: F401  (registers our model types, as every command and helper does)


def _prompt(*args, **kwargs):
    raise AssertionError(f"AutoTokenizer prompted: {args}")


def assert_tokenizer_loads_quietly(folder):
    """Load `folder`'s tokenizer with no arguments; fail on a prompt, on a dynamic module from the folder and on any
    warning (Python's or transformers' logger). Returns the tokenizer."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = transformers_logging.get_logger()
    modules = {name for name in sys.modules if name.startswith("transformers_modules")}
    prompt, builtins.input = builtins.input, _prompt
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
    finally:
        builtins.input = prompt
        library.removeHandler(handler)
    said = [record.getMessage() for record in records] + [str(warning.message) for warning in caught]
    assert not said, f"loading the tokenizer of {folder} warned: {said}"
    loaded = {name for name in sys.modules if name.startswith("transformers_modules")} - modules
    assert not loaded, f"loading the tokenizer of {folder} ran code shipped with it: {sorted(loaded)}"
    return tokenizer
