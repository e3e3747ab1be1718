"""The suite runs offline, a file per worker (pytest-xdist: `-n auto --dist loadfile` in pytest.ini), and its
session fixtures."""

import atexit
import gc
import os
import shutil
import tempfile

# Before anything imports huggingface_hub or datasets, which read these once: no test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# Before torch and transformers are imported: each worker gets its share of the cores (two workers with two
# threads each on two cores spin against each other) and a remote-code module cache of its own (workers loading
# exported folders at once would otherwise copy files into one cache while the other imports them).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    # reproduce_stages.available_cpus() counts the same, but importing it would import torch first.
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _CORES // _WORKERS)))
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="memory-models-tests-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], True)

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


def pytest_collection_finish(session):
    """Every test module is imported now: move those objects (torch, transformers, lm-eval, ours: ~600k) out of the
    garbage collector's sight. The Trainer calls `gc.collect()` at the start and end of every training; each call
    walked them all (about 0.3-0.6 s, some 90 calls in the suite's processes)."""
    gc.freeze()
