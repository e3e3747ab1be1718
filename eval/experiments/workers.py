"""Worker processes of `memory-models reproduce` (seeds side by side) and `demo --jobs 2` (the control beside the
autoencoder) that end with the command that started them.

Python's process pools stop their workers when the command exits normally or on Ctrl-C (the whole process group
gets it), but not when the command alone is killed (`kill PID`, a scheduler's time limit, an OOM kill): its
workers would go on training for hours, writing into the output folder. Every worker started here watches its
parent and exits as soon as the parent is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.managers import SyncManager

ORPHANED_EXIT_CODE = 143  # as if terminated by SIGTERM (128 + 15)


def stop_with_parent() -> None:
    """In a process started by `multiprocessing`: exit as soon as its parent process ends (a no-op elsewhere)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()  # returns when the parent's end of the start-up pipe closes: the parent has ended
        os._exit(ORPHANED_EXIT_CODE)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes (a fresh interpreter each: no inherited threads or CUDA state) that
    end with this process."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=stop_with_parent)


def worker_manager() -> SyncManager:
    """A started `multiprocessing` manager (its queues pass between a pool's workers) that ends with this process;
    use it as a context manager to shut it down."""
    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(stop_with_parent)
    return manager
