"""A stand-in for the set-up `.venv` whose `memory-models` and `lm_eval` start warm, for the README shell tests.

Each of those programs costs 4-5 s of imports (torch, transformers, peft, datasets, lm-eval) before it does
anything, and the README's recipe calls them fourteen times. Here one server process imports them once; each call
of `.venv/bin/memory-models ...` or `.venv/bin/lm_eval ...` is then a small client that hands the server its
arguments, working directory, environment and standard streams (over a Unix socket), and the server forks a child
that runs the program's console-script entry point with them and returns its exit status. The child is a fresh
copy of an interpreter that has only imported modules, so a command behaves as it does from a cold start: same
argv, cwd, environment, streams and exit code. Every other program of the folder (`python`, `torchrun`, ...) is
the real one. The console scripts themselves are exercised cold by tests/test_packaging.py. The server also
parses lm-eval's own task files once (`parse_lm_eval_tasks_once`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import traceback
from pathlib import Path

WARM = ("memory-models", "lm_eval")  # console scripts that start warm
PRELOAD = ("memory_models.eval.cli", "memory_models.training.train", "memory_models.eval.harness.compare",
           "lm_eval.__main__", "lm_eval.evaluator",
           "lm_eval.models.huggingface", "transformers.models.llama.modeling_llama")
CLIENT = """#!{python} -IS
import json, os, socket, struct, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect({address!r})
payload = json.dumps({{"program": {program!r}, "argv": sys.argv, "cwd": os.getcwd(),
                      "env": dict(os.environ)}}).encode()
socket.send_fds(connection, [struct.pack("!I", len(payload))], [0, 1, 2])
connection.sendall(payload)
status = b""
while len(status) < 4:
    chunk = connection.recv(4 - len(status))
    if not chunk:
        sys.exit("warm launcher: the server closed the connection")
    status += chunk
sys.exit(struct.unpack("!i", status)[0])
"""


def entry_point(name: str):
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == name]
    return script.load()


def exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_child(connection: socket.socket) -> None:
    """In the forked child: take over the client's streams, cwd and environment, run the program, report."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the program waits for its own subprocesses
    header, fds, _, _ = socket.recv_fds(connection, 4, 3)
    (length,) = struct.unpack("!I", header)
    payload = b""
    while len(payload) < length:
        payload += connection.recv(length - len(payload))
    request = json.loads(payload)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    try:
        status = exit_status(entry_point(request["program"])())
    except SystemExit as stop:
        status = exit_status(stop.code)
    except BaseException:  # noqa: BLE001  (a crash is the program's exit status 1, as from a cold start)
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    connection.sendall(struct.pack("!i", status))
    os._exit(status)


def parse_lm_eval_tasks_once() -> None:
    """lm-eval parses its own ~14,000 task YAML files on every run to index them (5-8 s). Parse them here, once:
    each child then takes the parsed dictionary of such a file on its first request for it (a fork holds its own
    copy, untouched by other children), and parses anything else, or anything a second time, as usual."""
    import lm_eval
    from lm_eval.tasks import _index

    parse, parsed = _index.load_yaml, {}

    def record(path, **options):
        cfg = parse(path, **options)
        parsed[(str(path), tuple(sorted(options.items())))] = cfg
        return cfg

    def replay(path, **options):
        cfg = parsed.pop((str(path), tuple(sorted(options.items()))), None)
        return parse(path, **options) if cfg is None else cfg

    _index.load_yaml = record
    _index.TaskIndex.build([Path(lm_eval.__file__).parent / "tasks"])
    _index.load_yaml = replay


def serve(address: str) -> None:
    for module in PRELOAD:
        importlib.import_module(module)
    parse_lm_eval_tasks_once()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(8)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            server.close()
            run_child(connection)
        connection.close()


def make_venv(folder: Path, address: str) -> Path:
    """`folder/.venv`: the running environment's files, with warm `memory-models` and `lm_eval` in `bin/`."""
    real = Path(sys.prefix)
    venv = folder / ".venv"
    (venv / "bin").mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name != "bin":
            (venv / entry.name).symlink_to(entry)
    for program in (real / "bin").iterdir():
        target = venv / "bin" / program.name
        if program.name in WARM:
            target.write_text(CLIENT.format(python=sys.executable, address=address, program=program.name))
            target.chmod(0o755)
        else:
            target.symlink_to(program)
    return venv


class WarmServer:
    """The server process (started with `env`, which the programs' imports may read once)."""

    def __init__(self, folder: Path, env: dict):
        self.address = str(folder / "warm.sock")
        self.process = subprocess.Popen([sys.executable, __file__, self.address], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"warm launcher did not start: {line}{self.process.stderr.read()}")

    def venv(self, folder: Path) -> Path:
        return make_venv(folder, self.address)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


if __name__ == "__main__":
    serve(sys.argv[1])
