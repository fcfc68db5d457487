"""The live process table as tests read it (from /proc): a process's children, its command line, whether it lives.
Shared by the tests that check an interrupted or killed run leaves no process behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """Pids of the live processes below ``pid``, at any depth."""
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children(parent)]
        found += frontier
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ("" once it is gone: a short-lived process can go between two reads)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def survivors(pids: list[int], within_s: float) -> list[int]:
    """The pids of ``pids`` still alive after waiting up to ``within_s`` seconds for them to end."""
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def kill_all(pids: list[int]) -> None:
    """SIGKILL whichever of ``pids`` still runs (a test's clean-up, whatever its checks found)."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
