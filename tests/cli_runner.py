"""Run ``python -m thinkrl.cli ARGS`` as a real process, without paying Python's and torch's start-up each time.

Most CLI tests start a command that refuses its input in milliseconds, after ~3 s of imports (torch, pydantic and
thinkrl's modules). `run_thinkrl` forks each command from a warm interpreter instead (the *zygote*: this file run
as a script, with torch and every command module imported once, and nothing else done). The command is still its
own process: its stdin, stdout and stderr are pipes of its own, it runs ``thinkrl.cli`` as ``__main__`` through
`runpy` (what ``-m`` does), and it ends as the interpreter ends a program (non-daemon threads joined, atexit handlers
run, the exit status of `SystemExit`), whose status the zygote reports.

What a fork cannot mirror falls back to a plain subprocess: an environment whose interpreter- or library-level
variables (``PYTHONHASHSEED``, ``OMP_*``, ``MKL_*``... see `STARTUP_VARIABLES`) differ from the zygote's, which
read them once at its start.
``tests/test_cli_runner.py`` checks that both ways give the same stdout, stderr and status.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTUP_VARIABLES = ("PYTHONHASHSEED", "PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONUNBUFFERED",
                     "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONWARNINGS", "PYTHONOPTIMIZE", "PYTHONDEVMODE",
                     "PYTHONFAULTHANDLER", "PYTHONMALLOC", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
                     "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "LD_", "MALLOC_", "CUDA_VISIBLE_DEVICES")
"""Variables (names or prefixes) read once when the interpreter or a library of torch starts: a command given other
values than the zygote had runs as a plain subprocess."""

_zygote: dict[str, Any] = {}  # "proc", "socket", "folder", "env": the running zygote, started by the first call


def run_thinkrl(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 300.0,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-m", "thinkrl.cli", *args], capture_output=True, text=True, ...)``,
    forked from the warm zygote when ``env`` allows it. Raises `subprocess.TimeoutExpired` (the command killed)."""
    env = dict(os.environ if env is None else env)
    cwd = os.getcwd() if cwd is None else cwd
    if not _forkable(env):
        return run_plain(*args, cwd=cwd, env=env, timeout=timeout, input=input)
    zygote = _start_zygote()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(zygote["socket"])
        request = json.dumps({"args": list(args), "cwd": str(cwd), "env": env}).encode()
        socket.send_fds(conn, [len(request).to_bytes(8, "big") + request], [stdin_r, stdout_w, stderr_w])
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        replies = conn.makefile("r")
        pid = int(json.loads(replies.readline())["pid"])
        try:
            stdout, stderr = _communicate(stdin_w, stdout_r, stderr_r, input, time.monotonic() + timeout)
        except subprocess.TimeoutExpired as expired:
            os.kill(pid, signal.SIGKILL)
            replies.readline()
            raise subprocess.TimeoutExpired(["thinkrl", *args], timeout) from expired
        status = int(json.loads(replies.readline())["returncode"])
    return subprocess.CompletedProcess(["thinkrl", *args], status, stdout, stderr)


def run_plain(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, timeout: float = 300.0,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The same command as a plain ``python -m thinkrl.cli`` subprocess (what `run_thinkrl` stands for)."""
    return subprocess.run([sys.executable, "-m", "thinkrl.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, input=input)


def _forkable(env: dict[str, str]) -> bool:
    base = _zygote.get("env", os.environ)
    keys = {k for k in (*env, *base) if k.startswith(STARTUP_VARIABLES)}
    return all(env.get(k) == base.get(k) for k in keys)


def _communicate(stdin_w: int, stdout_r: int, stderr_r: int, text: str | None,
                 deadline: float) -> tuple[str, str]:
    """Feed stdin, read stdout and stderr to their end (every writer closed them), as `Popen.communicate`."""
    pending = (text or "").encode()
    chunks: dict[int, list[bytes]] = {stdout_r: [], stderr_r: []}
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        if pending:
            os.set_blocking(stdin_w, False)
            selector.register(stdin_w, selectors.EVENT_WRITE)
        else:
            os.close(stdin_w)
        try:
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired("thinkrl", 0)
                for key, _ in selector.select(remaining):
                    if key.fd == stdin_w:
                        try:
                            pending = pending[os.write(stdin_w, pending[:65536]):]
                        except BrokenPipeError:
                            pending = b""
                        if not pending:
                            selector.unregister(stdin_w)
                            os.close(stdin_w)
                        continue
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
        finally:
            for fd in (stdout_r, stderr_r, *([stdin_w] if pending else [])):
                os.close(fd)
    return tuple(b"".join(chunks[fd]).decode() for fd in (stdout_r, stderr_r))  # type: ignore[return-value]


def _start_zygote() -> dict[str, Any]:
    if "proc" in _zygote and _zygote["proc"].poll() is None:
        return _zygote
    # /tmp where there is one: a Unix socket's path must stay under ~100 bytes, whatever TMPDIR is
    folder = tempfile.mkdtemp(prefix="thinkrl-zygote-", dir="/tmp" if os.path.isdir("/tmp") else None)
    path = os.path.join(folder, "socket")
    proc = subprocess.Popen([sys.executable, __file__, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n", "the CLI zygote did not start"
    _zygote.update(proc=proc, socket=path, folder=folder, env=dict(os.environ))
    atexit.register(_stop_zygote)
    return _zygote


def _stop_zygote() -> None:
    proc = _zygote.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(_zygote.pop("folder", ""), ignore_errors=True)


# ---- the zygote (this file run as a script) ------------------------------------------------------------------------
def _serve(path: str) -> tuple[socket.socket, dict[str, Any], list[int]]:
    """Accept requests until the test process is gone; in each forked child, return (connection, request, fds)."""
    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    server.settimeout(1.0)
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        request, fds = _receive(conn)
        pid = os.fork()
        if pid == 0:
            server.close()
            return conn, request, fds
        for fd in fds:
            os.close(fd)
        conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall((json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())
        conn.close()
    sys.exit(0)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    size = int.from_bytes(data[:8], "big")
    while len(data) < 8 + size:
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise EOFError("the request ended early")
        data += chunk
    return json.loads(data[8 : 8 + size]), fds


def _become_the_command(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take the request's stdio, folder, environment and arguments."""
    conn.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = os.getcwd()  # as -m does (the zygote, a script, had its own folder there)
    sys.argv = ["thinkrl", *request["args"]]  # runpy puts the module's path first, as -m does


def main() -> None:
    import importlib
    import runpy

    import torch  # noqa: F401 - the import this zygote exists to pay once

    from thinkrl.cli import COMMANDS

    for module, _ in COMMANDS.values():
        importlib.import_module(module)
    del sys.modules["thinkrl.cli"]  # -m runs it as __main__ without importing it first (runpy warns otherwise)
    conn, request, fds = _serve(sys.argv[1])
    _become_the_command(conn, request, fds)
    _exit_as_the_interpreter(lambda: runpy.run_module("thinkrl.cli", run_name="__main__", alter_sys=True))


def _exit_as_the_interpreter(run: Any) -> None:
    """Run the command, then end the process as the interpreter would (the exit status of `SystemExit` or 1 with the
    traceback; non-daemon threads joined, atexit handlers run, stdio flushed) without tearing down every module of
    torch one by one, which takes a forked child ~1.2 s and changes nothing the command's caller sees."""
    import atexit
    import threading
    import traceback

    code: int = 0
    try:
        run()
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except BaseException as error:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exception(error)
        code = 1
        if isinstance(error, KeyboardInterrupt):  # the interpreter then ends by SIGINT
            code = -signal.SIGINT
    threading._shutdown()  # type: ignore[attr-defined]  # (private, as the interpreter calls it) join non-daemons
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    main()
