"""Non-blocking pipe I/O of a sandboxed run: the parent's side of stdin, stdout, stderr and the result channel."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from typing import IO


def open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (to wait on it in a selector), or None where the platform has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def read_some(fd: int) -> bytes | None:
    """Up to 64 KiB from ``fd``; b"" at end of file, None when nothing is ready after all."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def std_pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
    """The parent's ends of ``proc``'s stdin, stdout and stderr; it must have been started with all three PIPE."""
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:
        raise ValueError("the sandboxed program must be started with stdin, stdout and stderr as subprocess.PIPE")
    return proc.stdin, proc.stdout, proc.stderr


def write_some(sel: selectors.BaseSelector, pipe: IO[bytes], data: bytes, sent: int) -> int:
    """Write more of stdin to ``pipe``; close it when all is sent or the program stopped reading."""
    try:
        sent += os.write(pipe.fileno(), data[sent:sent + (1 << 16)])
    except BlockingIOError:
        return sent
    except OSError:  # EPIPE: the program closed its stdin or exited
        sent = len(data)
    if sent >= len(data):
        sel.unregister(pipe.fileno())
        pipe.close()
    return sent


def drain(fds: dict[int, bytearray], cap: int, seconds: float = 1.0) -> None:
    """Read what is left in the pipes after the kill (their writers are dead, so EOF comes fast)."""
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    for fd in fds:
        sel.register(fd, selectors.EVENT_READ)
    try:
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                chunk = read_some(key.fd)
                if chunk is None:
                    continue
                if not chunk or len(fds[key.fd]) > cap:
                    sel.unregister(key.fd)
                    continue
                fds[key.fd] += chunk
    finally:
        sel.close()
