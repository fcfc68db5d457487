"""Metrics: JSONL + real TensorBoard event files, timers, progress output, reading and plotting."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from thinkrl.train.metrics import MetricsLogger, Timer, plot_metrics, progress, read_metrics


def test_jsonl_and_tensorboard(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path / "run") as metrics:
        metrics.log(1, {"loss": 2.5, "reward/mean": torch.tensor(0.25), "num_tokens": 7})
        # flushed at once: a crash after this line keeps it
        first = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        assert len(first) == 1 and json.loads(first[0])["loss"] == 2.5
        metrics.log(2, {"loss": float("nan")})
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["reward/mean"] == 0.25 and records[0]["num_tokens"] == 7.0 and "time" in records[0]
    assert math.isnan(records[1]["loss"])
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"loss", "reward/mean", "num_tokens"}
    assert [(e.step, e.value) for e in accumulator.Scalars("reward/mean")] == [(1, 0.25)]
    with pytest.raises(ValueError, match="after close"):
        metrics.log(3, {"loss": 1.0})


def test_log_rejects_non_scalars(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, use_tensorboard=False) as metrics:
        with pytest.raises(ValueError, match="'x' is a tensor of shape \\(2,\\)"):
            metrics.log(0, {"x": torch.ones(2)})
        with pytest.raises(TypeError, match="'name' is a str"):
            metrics.log(0, {"name": "abc"})
        metrics.log(0, {"ok": 1.0})
    assert not (tmp_path / "tensorboard").exists()
    # appending: a second logger on the same folder (a resumed run) adds lines
    with MetricsLogger(tmp_path, use_tensorboard=False) as metrics:
        metrics.log(1, {"ok": 2.0})
    assert [r["ok"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1.0, 2.0]


def test_read_metrics_tolerates_only_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 1.0}]
    path.write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.0}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:1 is not valid JSON"):
        read_metrics(path)
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "none.jsonl")


def test_timer_accumulates_phases() -> None:
    timer = Timer()
    for _ in range(2):
        with timer.phase("rollout"):
            time.sleep(0.01)
    with pytest.raises(RuntimeError), timer.phase("update"):
        raise RuntimeError("boom")  # the phase is still counted
    result = timer.metrics()
    assert set(result) == {"time/rollout", "time/update"}
    assert 0.02 <= result["time/rollout"] < 0.5
    timer.reset()
    assert timer.metrics() == {}


def test_progress_plain_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    with progress(4, "rl", stream=stream, min_interval_s=3600) as bar:
        assert not bar.interactive
        for step in range(4):
            bar.update(reward=0.5 * step)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the first step and the last one; the interval suppresses the rest
    assert lines[0].startswith("rl: 1/4 (25%)") and lines[0].endswith("reward=0")
    assert lines[1].startswith("rl: 4/4 (100%)") and lines[1].endswith("reward=1.5")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rich_bar_on_a_tty() -> None:
    stream = FakeTTY()
    with progress(3, "sft", stream=stream) as bar:
        assert bar.interactive
        for _ in range(3):
            bar.update(loss=1.25)
    output = stream.getvalue()
    assert "sft" in output and "3/3" in output and "loss=1.25" in output


def test_plot_metrics_writes_png(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, use_tensorboard=False) as metrics:
        for step in range(5):
            metrics.log(step, {"loss": 1.0 / (step + 1), "reward": step * 0.1})
    out = plot_metrics(tmp_path / "metrics.jsonl", ["loss", "reward"], tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    with pytest.raises(ValueError, match=r"\['accuracy'\] are not in .*available: loss, reward"):
        plot_metrics(tmp_path / "metrics.jsonl", ["accuracy"], tmp_path / "x.png")
