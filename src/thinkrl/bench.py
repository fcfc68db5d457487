"""`thinkrl bench NAME`: run ``benchmarks/bench_<name>.py`` and print its JSON line.

Benchmarks live in the repository's ``benchmarks/`` folder (not in the installed
package), so this command works from a source checkout (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_").replace("_", "-") for p in BENCH_DIR.glob("bench_*.py"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"benchmark name, one of: {', '.join(available()) or '(none found)'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    script = BENCH_DIR / f"bench_{args.name.replace('-', '_')}.py"
    if not script.exists():
        raise ValueError(f"unknown benchmark {args.name!r}; available: {', '.join(available())} (in {BENCH_DIR})")
    sys.argv = [str(script), *args.args]
    if str(BENCH_DIR) not in sys.path:  # as `python benchmarks/x.py` does: benchmarks import their siblings by name
        sys.path.insert(0, str(BENCH_DIR))
    runpy.run_path(str(script), run_name="__main__")
    return 0
