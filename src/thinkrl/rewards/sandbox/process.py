"""Run one untrusted Python program in the sandbox and say how it ended (`run_program`).

The parent owns the clock: it feeds stdin, reads stdout, stderr and the runner's result channel with a
byte cap each, and SIGKILLs the whole process group (and, as root, every process of the program's
dedicated uid) at the wall-clock deadline, past an output cap, and after the program exits, so a detached
child cannot outlive its run. Which isolation is used is decided once per process (see `resolve_isolation`).
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from thinkrl.rewards.sandbox import isolation as iso_mod
from thinkrl.rewards.sandbox.isolation import Isolation
from thinkrl.rewards.sandbox.limits import SandboxLimits, Status
from thinkrl.rewards.sandbox.pipes import drain, open_pidfd, read_some, std_pipes, write_some

logger = logging.getLogger(__name__)

RUNNER_SOURCE_PATH = Path(__file__).with_name("_runner.py")
_CACHE: dict[tuple[str, str | None, int, str, bool], Isolation] = {}
#: Set to 1 to opt in to the rlimits-only fallback without touching code (see `SandboxLimits.allow_unisolated`).
ALLOW_UNISOLATED_ENV = "THINKRL_SANDBOX_ALLOW_UNISOLATED"
_CACHE_LOCK = threading.Lock()
_WARNED: set[str] = set()


@dataclass(frozen=True)
class ProgramResult:
    """How one sandboxed program ended.

    Fields:
        status: ``ok`` (exit 0), ``runtime_error``, ``timeout``, ``memory``, ``output_limit`` or
            ``sandbox_error`` (the sandbox itself failed; not the program's fault).
        stdout, stderr: captured text (UTF-8, undecodable bytes replaced), each at most
            ``limits.max_output_bytes``.
        exit_code: the program's exit status; a negative signal number when a signal killed it; None when
            the parent killed it (timeout, output cap) or it never started.
        wall_s: wall-clock seconds from launch to exit.
        reason: one line for people: ``"exit 0"``, the exception (``"ZeroDivisionError: division by zero"``),
            ``"wall-clock limit 2.0 s"``, ``"killed by SIGSEGV"``...
        events: records the in-sandbox runner wrote on the result channel (see ``_runner.py``).
        isolation: ``"bwrap"`` or ``"rlimits"``.
    """

    status: Status
    stdout: str
    stderr: str
    exit_code: int | None
    wall_s: float
    reason: str
    events: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    isolation: str = ""


# --- isolation choice -------------------------------------------------------------------------------------


def _warn_once(key: str, message: str) -> None:
    if key in _WARNED:
        return
    _WARNED.add(key)
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _probe(iso: Isolation, limits: SandboxLimits) -> str | None:
    """None when ``print('ok')`` runs in this sandbox, else why not."""
    result = _execute(iso, limits.model_copy(update={"timeout_s": 10.0}), "print('ok')", b"", {"mode": "stdio"})
    if result.status is Status.OK and result.stdout.strip() == "ok":
        return None
    return f"{result.status}: {result.reason} {result.stderr.strip()[-300:]}".strip()


def _first_working(mode: Literal["bwrap", "rlimits"], limits: SandboxLimits, unshare_net: bool = False,
                   bwrap: str = "bwrap") -> tuple[Isolation | None, str]:
    reasons = []
    for python in iso_mod.python_candidates(limits):
        iso = Isolation(mode, python, iso_mod.is_root(), unshare_net, bwrap)
        why = _probe(iso, limits)
        if why is None:
            return iso, ""
        reasons.append(f"{python}: {why}")
    return None, "; ".join(reasons) or "no python interpreter found"


def _resolve_bwrap(limits: SandboxLimits) -> tuple[Isolation | None, str]:
    bwrap = shutil.which(limits.bwrap)
    if bwrap is None:
        return None, f"{limits.bwrap!r} is not installed (Debian: apt-get install bubblewrap)"
    return _first_working("bwrap", limits, bwrap=bwrap)


def unisolated_allowed(limits: SandboxLimits) -> bool:
    """True if the user opted in to the rlimits-only fallback (the setting, or the environment variable)."""
    return limits.allow_unisolated or os.environ.get(ALLOW_UNISOLATED_ENV, "") == "1"


def _resolve_rlimits(limits: SandboxLimits) -> Isolation:
    unshare_net = iso_mod.is_root() and shutil.which("unshare") is not None
    iso, why = _first_working("rlimits", limits, unshare_net)
    if iso is None and unshare_net:
        iso, why = _first_working("rlimits", limits, False)
    if iso is None:
        raise RuntimeError(f"no Python interpreter runs in the rlimits sandbox: {why}")
    if iso.drop_uid:
        net = "no network (unshare --net)" if iso.unshare_net else "NETWORK ALLOWED"
        _warn_once("rlimits-root", f"sandbox: rlimits-only fallback (no bubblewrap): dedicated uids, {net}, "
                                   "the filesystem is protected by permissions only (world-writable dirs "
                                   "such as /tmp stay writable)")
    else:
        _warn_once("rlimits-user", "sandbox: rlimits-only fallback as a normal user: programs can READ YOUR "
                                   "FILES, use the NETWORK, signal your processes and leave detached children; "
                                   "install bubblewrap or run as root")
    return iso


def resolve_isolation(limits: SandboxLimits) -> Isolation:
    """Decide, once per process and setting, how programs are isolated (probing by running one).

    ``auto`` uses bubblewrap when it runs here; otherwise it raises RuntimeError naming the opt-in, or,
    with ``allow_unisolated`` (or ``THINKRL_SANDBOX_ALLOW_UNISOLATED=1``), falls back to rlimits with a
    warning (`RuntimeWarning` and a log line, once). ``bwrap`` raises RuntimeError saying why when it
    cannot run; ``rlimits`` is the explicit choice of the weaker mode.
    """
    allowed = unisolated_allowed(limits)
    key = (limits.isolation, limits.python, limits.uid_base, limits.bwrap, allowed)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if limits.isolation in ("auto", "bwrap"):
            iso, why = _resolve_bwrap(limits)
            if iso is None and limits.isolation == "bwrap":
                raise RuntimeError(f"bubblewrap sandbox unavailable: {why}")
            if iso is None and not allowed:
                raise RuntimeError(
                    f"bubblewrap sandbox unavailable ({why}); refusing to run untrusted code with rlimits only "
                    "(network, files and secrets would be reachable). Install bubblewrap, or opt in to the weaker "
                    f"isolation with SandboxLimits(allow_unisolated=True) or {ALLOW_UNISOLATED_ENV}=1")
            if iso is None:
                _warn_once("auto-fallback", f"sandbox: bubblewrap unavailable ({why}); FALLING BACK to rlimits only")
                iso = _resolve_rlimits(limits)
        else:
            iso = _resolve_rlimits(limits)
        _CACHE[key] = iso
        return iso


# --- one run ----------------------------------------------------------------------------------------------


@dataclass
class _Streams:
    """Bytes read so far from the child, and whether a cap was hit."""

    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    res: bytearray = field(default_factory=bytearray)
    over: str = ""


def _pump(proc: subprocess.Popen[bytes], stdin: bytes, result_r: int, limits: SandboxLimits, steps: int,
          streams: _Streams) -> bool:
    """Feed stdin and read the outputs until the program exits, a deadline passes or a cap is hit.

    Returns True when the program exited by itself. Each line on the result channel restarts the
    per-step clock (``timeout_s``); the whole run may take at most ``timeout_s * steps``.
    """
    start = time.monotonic()
    hard_deadline = start + limits.timeout_s * steps
    step_deadline = start + limits.timeout_s
    stdin_pipe, stdout, stderr = std_pipes(proc)
    sel = selectors.DefaultSelector()
    bufs = {stdout.fileno(): streams.out, stderr.fileno(): streams.err, result_r: streams.res}
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pidfd = open_pidfd(proc.pid)  # readable when the program exits
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)
    stdin_fd, sent = stdin_pipe.fileno(), 0
    os.set_blocking(stdin_fd, False)
    if stdin:
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        stdin_pipe.close()
    try:
        while True:
            timeout = min(step_deadline, hard_deadline) - time.monotonic()
            if timeout <= 0:
                return False
            if pidfd is None:  # no pidfd (Linux < 5.3): poll
                if proc.poll() is not None:
                    return True
                timeout = min(timeout, 0.01)
            for key, _ in sel.select(timeout):
                fd = key.fd
                if fd == pidfd:
                    return True
                if fd == stdin_fd:
                    sent = write_some(sel, stdin_pipe, stdin, sent)
                    continue
                chunk = read_some(fd)
                if chunk is None:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                bufs[fd] += chunk
                if fd == result_r and b"\n" in chunk:
                    step_deadline = time.monotonic() + limits.timeout_s
                if len(bufs[fd]) > limits.max_output_bytes:
                    name = {result_r: "result channel", stdout.fileno(): "stdout"}.get(fd, "stderr")
                    streams.over = f"{name} exceeded {limits.max_output_bytes} bytes"
                    return False
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        if not stdin_pipe.closed:
            stdin_pipe.close()


def _events(raw: bytes) -> tuple[dict[str, Any], ...]:
    out = []
    for line in raw.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            out.append(record)
    return tuple(out)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _classify(iso: Isolation, limits: SandboxLimits, exited: bool, streams: _Streams, rc: int | None,
              events: tuple[dict[str, Any], ...]) -> tuple[Status, str, int | None]:
    """(status, reason, exit_code) of a finished run."""
    if streams.over:
        return Status.OUTPUT_LIMIT, streams.over, None
    if not exited or rc is None:
        return Status.TIMEOUT, f"wall-clock limit {limits.timeout_s:g} s", None
    # bubblewrap reports a child killed by signal N as exit status 128 + N.
    sig = rc - 128 if iso.mode == "bwrap" and rc > 128 else (-rc if rc < 0 else 0)
    exit_code = -sig if sig else rc
    if sig == signal.SIGXCPU:
        return Status.TIMEOUT, "CPU-time limit", exit_code
    errors = [e for e in events if e["event"] == "error" and e.get("i") is None]
    error = str(errors[-1].get("error", ""))[:500] if errors else ""
    stderr_tail = streams.err[-4096:].decode("utf-8", "replace")
    if rc != 0 and ((errors and errors[-1].get("memory")) or "Cannot allocate memory" in stderr_tail):
        return Status.MEMORY, error or "out of memory", exit_code
    if sig:
        return Status.RUNTIME_ERROR, f"killed by {_signal_name(sig)}", exit_code
    if rc != 0:
        lines = [ln for ln in stderr_tail.splitlines() if ln.strip()]
        return Status.RUNTIME_ERROR, error or (lines[-1][:500] if lines else f"exit code {rc}"), exit_code
    return Status.OK, "exit 0", 0


def execute(code: str, stdin: bytes, limits: SandboxLimits, config: dict[str, Any], steps: int = 1,
            isolation: Isolation | None = None) -> ProgramResult:
    """Run ``code`` through the in-sandbox runner (lower level than `run_program`).

    ``config`` is the runner's: ``{"mode": "stdio" | "script"}`` or ``{"mode": "call", "fn_name": ...,
    "inputs": [[args...], ...], "start": k}``; ``steps`` is how many ``timeout_s`` budgets the run may use.
    """
    iso = isolation if isolation is not None else resolve_isolation(limits)
    return _execute(iso, limits, code, stdin, config, steps)


def _execute(iso: Isolation, limits: SandboxLimits, code: str, stdin: bytes, config: dict[str, Any],
             steps: int = 1) -> ProgramResult:
    with iso_mod.uid_slot(limits) as uid:
        root, src, work = iso_mod.make_run_dir(uid)
        try:
            rlimits = limits.rlimits(steps)
            if iso.mode == "rlimits" and uid is None:  # RLIMIT_NPROC counts all of our own processes
                rlimits["RLIMIT_NPROC"] += len(iso_mod.pids_of_uid(os.getuid()))
            if iso.mode == "rlimits":  # and the runner's watcher (`_runner._reap_group_after_death`)
                rlimits["RLIMIT_NPROC"] += 1
            iso_mod.write_file(f"{src}/_runner.py", RUNNER_SOURCE_PATH.read_text(encoding="utf-8"))
            iso_mod.write_file(f"{src}/solution.py", code)
            parent = os.getpid() if iso.mode == "rlimits" else None  # (bwrap mode: --die-with-parent)
            iso_mod.write_file(f"{src}/config.bin", marshal.dumps({**config, "rlimits": rlimits,
                                                                   "parent_pid": parent}, 4))
            return _launch(iso, limits, src, work, uid, stdin, steps)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _launch(iso: Isolation, limits: SandboxLimits, src: str, work: str, uid: int | None, stdin: bytes,
            steps: int) -> ProgramResult:
    result_r, result_w = os.pipe()
    launch = iso_mod.build_launch(iso, limits, src, work, result_w, uid)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(result_w,), start_new_session=True,
                                env=launch.env, cwd=launch.cwd, user=launch.user, group=launch.group,
                                extra_groups=launch.extra_groups)
    except OSError as exc:
        os.close(result_r)
        return ProgramResult(Status.SANDBOX_ERROR, "", "", None, 0.0, f"launch failed: {exc}", (), iso.mode)
    finally:
        os.close(result_w)
    streams = _Streams()
    try:
        exited = _pump(proc, stdin, result_r, limits, steps, streams)
    finally:
        iso_mod.kill_group(proc.pid)  # before wait(): the pid cannot be reused while unreaped
        if uid is not None:
            iso_mod.kill_uid(uid)
        rc = proc.wait()
        wall_s = time.monotonic() - start
        _, stdout, stderr = std_pipes(proc)
        drain({stdout.fileno(): streams.out, stderr.fileno(): streams.err, result_r: streams.res},
              limits.max_output_bytes)
        stdout.close()
        stderr.close()
        os.close(result_r)
    cap = limits.max_output_bytes
    events = _events(bytes(streams.res[:cap]))
    status, reason, exit_code = _classify(iso, limits, exited, streams, rc if exited else None, events)
    return ProgramResult(status, streams.out[:cap].decode("utf-8", "replace"),
                         streams.err[:cap].decode("utf-8", "replace"), exit_code, wall_s, reason, events, iso.mode)


def run_program(code: str, stdin: str | bytes = "", *, limits: SandboxLimits | None = None) -> ProgramResult:
    """Run untrusted Python source ``code`` as ``__main__`` in the sandbox, feeding it ``stdin``.

    Never raises for anything the program does; bad arguments raise TypeError. The isolation is chosen
    by ``limits.isolation`` (see `resolve_isolation`).
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be str, got {type(code).__name__}")
    if not isinstance(stdin, str | bytes):
        raise TypeError(f"stdin must be str or bytes, got {type(stdin).__name__}")
    limits = limits if limits is not None else SandboxLimits()
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    return execute(code, data, limits, {"mode": "stdio"})
