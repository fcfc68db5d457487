"""In-sandbox runner: applies the rlimits, then runs the untrusted solution. Not imported by thinkrl.

Started as ``python -I _runner.py CONFIG_PATH RESULT_FD`` inside the sandbox (stdlib only, Python 3.8+).
The config is a `marshal` dump written by the parent (trusted data; marshal keeps start-up free of
imports): ``{"mode": "stdio" | "script" | "call", "rlimits": {...}}`` plus, for ``call``, ``fn_name``,
``inputs`` (argument lists) and ``start``, and in the rlimits fallback ``parent_pid`` (the runner dies with
it, and a watcher process then kills the program's own children). The runner reports on the result channel
``RESULT_FD``, one JSON object per line:

- ``{"event": "loaded"}``: the solution module loaded (function-call mode);
- ``{"event": "result", "i": i, "value": v, "wall_s": t}``: call ``i`` returned ``v`` (JSON; tuples as lists);
- ``{"event": "error", "i": i, "error": "Type: message", "memory": bool}``: call ``i`` raised, or, with
  ``i`` null, the program or the module load did;
- ``{"event": "done", "nonce": n}``: a stdin/stdout or script program ran to its end (``n`` from the
  config, so that a program must at least read the config to forge it).

The parent compares values with the expected outputs, which never enter the sandbox, and parses the
channel as JSON only. The runner shares its process with the untrusted code, so the channel is evidence,
not proof: a program can write to it, but it can only claim outputs it could have returned anyway.
"""

from __future__ import annotations  # annotations stay unevaluated: no typing import at start-up (Python 3.8+)

import marshal
import os
import resource
import sys
import time
from importlib.util import module_from_spec, spec_from_file_location

SOLUTION_NAME = "solution.py"
# Address space held back from the program and handed back when it runs out of memory, so that reporting the
# MemoryError (importing json and traceback, formatting) does not itself fail at the limit.
_RESERVE_BYTES = 8 << 20
_reserve: list[bytearray] = []
TYPE_CHECKING = False  # (mypy reads the name as true; typing.TYPE_CHECKING would cost every run an import)
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType


def _send(fd: int, record: dict) -> None:
    import json  # lazily: a plain stdin/stdout run never needs it

    _write(fd, (json.dumps(record, default=_jsonable) + "\n").encode())


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the program closed or broke the channel: its own loss
        pass


def _jsonable(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    return repr(value)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return (f"{type(exc).__name__}: {message}" if message else type(exc).__name__)[:500]


def _hold_reserve() -> None:
    try:
        if not _reserve:
            _reserve.append(bytearray(_RESERVE_BYTES))
    except MemoryError:  # still at the limit: the next report goes without it
        pass


def _report_error(fd: int, exc: BaseException, i: int | None = None, **extra: object) -> None:
    if isinstance(exc, MemoryError):
        _reserve.clear()
    _send(fd, {"event": "error", "i": i, "error": _describe(exc), "memory": isinstance(exc, MemoryError), **extra})


def _print_solution_traceback(exc: BaseException) -> None:
    """Print the traceback from the solution's first frame on (the runner's frames are noise)."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.endswith(SOLUTION_NAME):
        tb = tb.tb_next
    # At most 30 frames: formatting a million-frame RecursionError would take seconds and memory.
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__, limit=30)
    sys.stderr.flush()


def _apply_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        hard = value + 1 if name == "RLIMIT_CPU" else value
        resource.setrlimit(getattr(resource, name), (value, hard))


def _load(path: str, name: str) -> ModuleType:
    """Run the solution file as module ``name`` (what ``python solution.py`` does for ``__main__``)."""
    spec = spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # never for a .py path; checked for a clear error
        raise ImportError("cannot load " + path)
    module = module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _run_program(path: str, fd: int, nonce: str) -> None:
    sys.argv = [path]
    try:
        _load(path, "__main__")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - report every failure of untrusted code
        _report_error(fd, exc)
        _print_solution_traceback(exc)
        sys.exit(1)
    try:  # noqa: SIM105 - contextlib would cost every run an import
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    _write(fd, b'{"event": "done", "nonce": "' + nonce.encode() + b'"}\n')


def _find_callable(module: ModuleType, fn_name: str) -> Callable[..., object]:
    cls = getattr(module, "Solution", None)
    if isinstance(cls, type) and hasattr(cls, fn_name):
        return lambda *args: getattr(cls(), fn_name)(*args)
    fn = getattr(module, fn_name, None)
    if callable(fn):
        return fn
    raise NameError(f"function {fn_name!r} not found (neither a top-level function nor a method of class Solution)")


def _run_calls(path: str, config: dict, fd: int) -> None:
    sys.argv = [path]
    try:
        target = _find_callable(_load(path, "solution"), config["fn_name"])
    except BaseException as exc:  # noqa: BLE001
        _report_error(fd, exc)
        _print_solution_traceback(exc)
        sys.exit(1)
    _send(fd, {"event": "loaded"})
    inputs = config["inputs"]
    for i in range(config["start"], len(inputs)):
        start = time.perf_counter()
        try:
            value = target(*inputs[i])
        except BaseException as exc:  # noqa: BLE001
            _report_error(fd, exc, i, wall_s=time.perf_counter() - start)
            del exc
            _hold_reserve()
            continue
        wall_s = time.perf_counter() - start
        try:
            _send(fd, {"event": "result", "i": i, "value": value, "wall_s": wall_s})
        except (TypeError, ValueError, RecursionError) as exc:
            _send(fd, {"event": "error", "i": i, "error": "unserializable return value: " + _describe(exc),
                       "memory": False, "wall_s": wall_s})


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent (the thinkrl process; its thread that started this one)
    dies, as bubblewrap's ``--die-with-parent`` does in bwrap mode: a killed parent leaves no program running.
    Set here, after the drop to a dedicated uid, which clears it. Linux only; elsewhere nothing happens."""
    import ctypes  # lazily: only the rlimits fallback needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(1, 9, 0, 0, 0) != 0  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):  # no prctl: not Linux
        return
    if not failed and os.getppid() != parent_pid:  # the parent died before the request: nobody waits for us
        os._exit(1)


def _reap_group_after_death() -> None:
    """Fork a watcher that SIGKILLs this runner's process group once the runner is gone. The kernel kills the runner
    with its parent (`_die_with_parent`) but not the program's own children (``subprocess.Popen(["sleep", ...])``),
    which would outlive both; the watcher is in the same group, so it ends with them. It keeps no file of the
    runner's open (the parent reads the runner's pipes to their end)."""
    import signal  # lazily: only the rlimits fallback needs it

    runner, group = os.getpid(), os.getpgrp()
    if os.fork() != 0:
        return
    try:
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            try:  # noqa: SIM105 - contextlib would cost every run an import
                os.close(fd)
            except OSError:
                pass
        signal.signal(signal.SIGUSR1, lambda *_: os.killpg(group, signal.SIGKILL))
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGUSR1), 0, 0, 0)  # PR_SET_PDEATHSIG
        while os.getppid() == runner:
            signal.pause()
        os.killpg(group, signal.SIGKILL)
    finally:
        os._exit(0)


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        config = marshal.load(f)
    fd = int(sys.argv[2])
    if config.get("parent_pid") is not None:
        _reap_group_after_death()
        _die_with_parent(config["parent_pid"])
    _hold_reserve()
    _apply_rlimits(config["rlimits"])
    path = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), SOLUTION_NAME)
    if config["mode"] == "call":
        _run_calls(path, config, fd)
    else:
        _run_program(path, fd, config.get("nonce", ""))


if __name__ == "__main__":
    main()
