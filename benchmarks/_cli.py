"""Argument checks shared by the benchmarks: a bad value is one `parser.error` line (exit status 2), never a
traceback from deep inside a run; and `progress`, the line a long benchmark prints on stderr after each part (its
JSON result stays alone on stdout)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# torch is imported by the checks that need it: a benchmark without torch (sandbox) keeps a small parent process
_START = time.perf_counter()


def progress(bench: str, message: str) -> None:
    """``thinkrl bench <bench> [<seconds since start>s] <message>`` on stderr, flushed (a run takes minutes)."""
    print(f"thinkrl bench {bench} [{time.perf_counter() - _START:.0f}s] {message}", file=sys.stderr, flush=True)


def stdout_to_stderr() -> contextlib.redirect_stdout[Any]:
    """A ``with`` block whose prints (a library's: TRL prints its final metrics) go to stderr, so that stdout holds
    the benchmark's JSON line alone."""
    return contextlib.redirect_stdout(sys.stderr)


def check_at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, **least: int) -> None:
    """Each named option (``steps=1`` checks ``--steps``) is at least its minimum; None (not given) passes."""
    for name, minimum in least.items():
        value = getattr(args, name)
        if value is not None and value < minimum:
            parser.error(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def check_names(parser: argparse.ArgumentParser, flag: str, names: Iterable[str], known: Iterable[str]) -> None:
    """Every one of ``names`` (a comma list, split) is one of ``known``."""
    known = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(map(repr, unknown))}; known: {', '.join(known)}")


def check_device(parser: argparse.ArgumentParser, value: str) -> None:
    """``value`` names a torch device (cpu, cuda, cuda:1 ...)."""
    import torch

    try:
        torch.device(value)
    except RuntimeError:
        parser.error(f"--device {value!r} is not a torch device (e.g. cpu, cuda, cuda:1)")


def check_dtype(parser: argparse.ArgumentParser, value: str | None) -> None:
    """``value`` (when given) names a torch floating dtype (float32, bfloat16 ...)."""
    import torch

    if value is not None and not isinstance(getattr(torch, value, None), torch.dtype):
        parser.error(f"--dtype {value!r} is not a torch dtype (e.g. float32, bfloat16)")


def load_report(parser: argparse.ArgumentParser, flag: str, path: str, benchmark: str,
                key: str = "benchmark") -> dict[str, Any]:
    """The saved JSON report at ``path``, written by ``benchmark`` (its ``key`` field names it)."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        parser.error(f"{flag} {path}: cannot read a JSON report ({error})")
    if not isinstance(report, dict) or report.get(key) != benchmark:
        found = report.get(key) if isinstance(report, dict) else type(report).__name__
        parser.error(f"{flag} {path}: not a report of `thinkrl bench {benchmark}` ({key}: {found!r})")
    return report
