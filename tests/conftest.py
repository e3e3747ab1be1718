"""Session fixtures shared by test files."""

import os
from pathlib import Path

import pytest

from warm_venv import WarmServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def warm_server(tmp_path_factory):
    """One server that has imported the CLI and lm-eval, for the README shell tests (see warm_venv.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    server = WarmServer(tmp_path_factory.mktemp("warm"), env)
    yield server
    server.close()
