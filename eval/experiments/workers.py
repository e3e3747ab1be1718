"""Worker processes of `memory-models reproduce` (seeds side by side) and `demo --jobs 2` (the control beside the
autoencoder) that end with the command that started them.

Python's process pools stop their workers when the command exits normally or on Ctrl-C (the whole process group
gets it), but not when the command alone is killed (`kill PID`, a scheduler's time limit, an OOM kill): its
workers would go on training for hours, writing into the output folder. Every worker started here watches its
parent and exits as soon as the parent is gone. What a worker prints goes to a log of its own (`output_to`), so
that the workers' progress bars and warnings do not interleave on the command's terminal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.managers import SyncManager

from memory_models.training.allocator import keep_freed_memory

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


def start_worker() -> None:
    """A pool worker's set-up: it ends with its parent and keeps freed memory for reuse, as the command does
    (`training.allocator`)."""
    stop_with_parent()
    keep_freed_memory()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` spawned processes (a fresh interpreter each: no inherited threads or CUDA state) that
    end with this process."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker)


def worker_manager() -> SyncManager:
    """A started `multiprocessing` manager (its queues pass between a pool's workers) that ends with this process;
    use it as a context manager to shut it down."""
    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(stop_with_parent)
    return manager


@contextlib.contextmanager
def output_to(log, mode: str = "a"):
    """Everything this process prints meanwhile (Python's and native code's stdout and stderr: progress bars,
    library warnings) goes to the file `log`, appended by default; an error that escapes is written there too.
    Restored afterwards, so one worker can run several tasks, each into its own log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, mode) as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
