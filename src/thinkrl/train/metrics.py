"""Run metrics: JSONL + TensorBoard logging, phase timers, progress bars, reading and plotting.

`MetricsLogger` appends one JSON line per logged step to ``<output_dir>/metrics.jsonl``
(flushed every time, so a crash keeps everything logged so far) and mirrors the
scalars to TensorBoard under ``<output_dir>/tensorboard``. Call it on rank 0 only.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {key!r} is a tensor of shape {tuple(value.shape)}; log scalars only")
        return float(value.detach().cpu())
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"metric {key!r} is a {type(value).__name__}; log numbers or 1-element tensors")


class MetricsLogger:
    """Append-only metrics log (JSONL) with an optional TensorBoard mirror.

    Args:
        output_dir: run folder; ``metrics.jsonl`` and ``tensorboard/`` go there (created if missing).
        use_tensorboard: also write TensorBoard scalars.
    """

    def __init__(self, output_dir: str | Path, use_tensorboard: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / METRICS_FILE
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._writer = None
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record ``metrics`` (numbers or 1-element tensors) at ``step``; NaN/inf are kept as is."""
        if self._file is None:
            raise ValueError("MetricsLogger.log called after close()")
        values = {key: _to_float(key, value) for key, value in metrics.items()}
        record = {"step": int(step), "time": time.time(), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, global_step=int(step))
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the files; later `log` calls raise."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Timer:
    """Accumulates wall-clock seconds per named phase (rollout, reward, update...).

        timer = Timer()
        with timer.phase("rollout"):
            ...
        logger.log(step, timer.metrics()); timer.reset()

    With ``synchronize=True`` CUDA is synchronised at phase edges so GPU work is counted.
    """

    def __init__(self, synchronize: bool = False) -> None:
        self.synchronize = synchronize and torch.cuda.is_available()
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body of the ``with`` block and add it to ``totals[name]``."""
        if self.synchronize:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronize:
                torch.cuda.synchronize()
            self.totals[name] += time.perf_counter() - start

    def metrics(self, prefix: str = "time/") -> dict[str, float]:
        """Totals as ``{prefix + name: seconds}``."""
        return {prefix + name: seconds for name, seconds in self.totals.items()}

    def reset(self) -> None:
        """Forget all totals."""
        self.totals.clear()


class ProgressBar:
    """A rich progress bar on a terminal; periodic plain lines otherwise (logs, CI, pipes).

    Use as a context manager; ``update(advance, **info)`` moves it and shows ``key=value`` info.
    """

    def __init__(self, total: int, description: str, *, stream: IO[str] | None = None,
                 min_interval_s: float = 10.0) -> None:
        if total < 0:
            raise ValueError(f"total ({total}) must be >= 0")
        self.total, self.description, self.min_interval_s = total, description, min_interval_s
        self.stream = stream if stream is not None else sys.stdout
        self.completed = 0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = self._last_line = time.monotonic()
        self._progress: Progress | None = None
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
            )
            self._task = self._progress.add_task(description, total=total, info="")
            self._progress.start()

    def update(self, advance: int = 1, **info: float | int | str) -> None:
        """Advance by ``advance`` steps; ``info`` values are shown beside the bar."""
        self.completed += advance
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, info=text)
            return
        now = time.monotonic()
        if self.completed >= self.total or now - self._last_line >= self.min_interval_s or self.completed == advance:
            self._last_line = now
            elapsed = now - self._start
            eta = elapsed / self.completed * (self.total - self.completed) if self.completed else math.nan
            pct = 100.0 * self.completed / self.total if self.total else 100.0
            self.stream.write(
                f"{self.description}: {self.completed}/{self.total} ({pct:.0f}%) "
                f"elapsed {elapsed:.0f}s eta {eta:.0f}s {text}".rstrip() + "\n"
            )
            self.stream.flush()

    def close(self) -> None:
        """Stop the live display (no-op in plain mode)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def progress(total: int, description: str, *, stream: IO[str] | None = None,
             min_interval_s: float = 10.0) -> ProgressBar:
    """A `ProgressBar` over ``total`` steps: rich when ``stream`` (default stdout) is a TTY,
    else a plain line at most every ``min_interval_s`` seconds (and at the first and last step)."""
    return ProgressBar(total, description, stream=stream, min_interval_s=min_interval_s)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics JSONL file (a run folder is accepted too).

    A truncated last line (a crash mid-write) is skipped with a warning; any other bad line
    raises ValueError naming the file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                logger.warning("skipping truncated last line %d of %s", number, path)
                break
            raise ValueError(f"{path}:{number} is not valid JSON: {err}") from None
    return records


def plot_metrics(jsonl_path: str | Path, keys: Sequence[str], out_png: str | Path) -> Path:
    """Plot each of ``keys`` against step, one subplot per key, into ``out_png``; returns the path.

    When a step was logged twice (a resumed run repeats the steps after its checkpoint),
    the last record wins.

    Raises ValueError naming a key that no record has (and listing the keys that exist).
    """
    if not keys:
        raise ValueError("plot_metrics needs at least one key")
    records = read_metrics(jsonl_path)
    available = sorted({k for r in records for k in r} - {"step", "time"})
    missing = [k for k in keys if k not in available]
    if missing:
        raise ValueError(f"metrics {missing} are not in {jsonl_path}; available: {', '.join(available)}")
    fig = Figure(figsize=(7.0, 2.4 * len(keys)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        by_step = {r["step"]: r[key] for r in records if key in r}  # a resumed run re-logs steps: last wins
        points = sorted(by_step.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
