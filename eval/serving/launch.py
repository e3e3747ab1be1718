"""Start a vLLM server as a child process, wait until it answers, stop it (the serving benchmark and tests).

    with running(serve_command(model_dir, port), f"http://127.0.0.1:{port}", log_path) as url:
        ...

The server runs in a session of its own, so that stopping it (SIGTERM, then SIGKILL after `STOP_SECONDS`) reaches
the engine processes vLLM starts under it too; on Linux it is also asked to end with the process that started it
(a test run killed by a timeout leaves no server behind).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

STOP_SECONDS = 30


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(model_dir, port: int, vllm_python: str | None = None, vllm_args=()) -> list[str]:
    """`memory-models serve MODEL --port PORT ...` run by this Python, as a user runs it."""
    command = [sys.executable, "-m", "memory_models.eval.cli", "serve", str(model_dir), "--port", str(port)]
    return command + (["--vllm-python", vllm_python] if vllm_python else []) + list(vllm_args)


def _end_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the parent dies (`prctl(PR_SET_PDEATHSIG)`; kept by exec)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return " | ".join(line.strip() for line in text[-lines:])


@contextlib.contextmanager
def running(command: list[str], url: str, log: Path, environment: dict | None = None, startup_seconds: float = 600):
    """Run `command` (a server that will answer at `url`), its output in `log`; yields `url` once it answers."""
    log = Path(log)
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(environment or {})}, preexec_fn=_end_with_parent)
    try:
        deadline = time.monotonic() + startup_seconds
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} before answering at {url} "
                                   f"(last lines of {log}: {_tail(log)})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer at {url} within {startup_seconds:g} s (see {log})")
            time.sleep(1)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's session (API server and engine), SIGKILL if it is still there after a while."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
