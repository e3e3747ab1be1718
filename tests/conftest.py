"""The suite runs offline, and its session fixtures."""

import os

# Before anything imports huggingface_hub or datasets, which read these once: no test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from warm_venv import WarmServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def warm_server(tmp_path_factory):
    """One server that has imported the CLI and lm-eval, for the README shell tests (see warm_venv.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    server = WarmServer(tmp_path_factory.mktemp("warm"), env)
    yield server
    server.close()
