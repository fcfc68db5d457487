"""`thinkrl bench weight-push` end to end on the two smallest sizes: one result row per size, and a progress line on
stderr as each size ends (stdout holds the JSON line alone). The timings are the benchmark's job
(docs/results/weight_push.md)."""

from __future__ import annotations

import json

from cli_runner import run_thinkrl


def test_a_tiny_run_reports_each_size_and_its_progress() -> None:
    done = run_thinkrl("bench", "weight-push", "--sizes", "demo,12m", "--repeats", "2", "--no-process", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)  # the JSON line alone
    assert [row["model"] for row in record["results"]] == ["demo", "12m"]
    prefix = "thinkrl bench weight-push ["
    lines = [line.split("] ", 1)[1] for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert [line.split(":")[0] for line in lines] == ["demo", "12m"]
    for line, row in zip(lines, record["results"], strict=True):
        assert f"update_weights {row['update_weights_ms']} ms" in line
