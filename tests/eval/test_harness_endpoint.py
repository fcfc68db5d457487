"""`thinkrl eval --base-url`: the harness against a real `thinkrl serve` on loopback.

Metrics are checked against a hand count of the verdicts written in samples.jsonl, each verdict against a regex
reading of the stored answer, the endpoint path against local sampling of the same model, and an interrupted run
(a killed subprocess, and a Ctrl-C in process) against an uninterrupted one after ``--resume``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from math import comb
from pathlib import Path

import pytest
from fastapi.responses import JSONResponse

from thinkrl.cli import main
from thinkrl.eval.benchmark import BenchmarkSpec, load_benchmark
from thinkrl.eval.endpoint import EndpointSampler, EndpointSpec
from thinkrl.eval.harness import run_config, run_eval
from thinkrl.eval.records import read_results
from thinkrl.eval.samplers import SampleSettings

K = 4


def eval_args(served, out: Path, *extra: str) -> list[str]:
    return ["eval", "--base-url", served.url, "--model", served.model_name, "--data", str(served.bench),
            "--samples", str(K), "--max-tokens", "24", "--temperature", "1.0", "--out", str(out), "--no-progress",
            *extra]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report_metrics(out: Path) -> list[dict]:
    return json.loads((out / "report.json").read_text())["budgets"]


def test_metrics_match_a_hand_count_of_the_written_verdicts(served, tmp_path: Path) -> None:
    assert main(eval_args(served, tmp_path / "run", "--concurrency", "4")) == 0
    records = lines(tmp_path / "run" / "samples.jsonl")
    answers = {p.id: p.ground_truth["answer"] for p in load_benchmark(BenchmarkSpec(data=str(served.bench)))}
    assert sorted(r["problem_id"] for r in records) == sorted(answers)
    counts = []
    for record in records:
        assert [s["index"] for s in record["samples"]] == list(range(K))
        for s in record["samples"]:  # each verdict by hand: the boxed digit equals the reference
            boxed = re.fullmatch(r"\\boxed\{(\d)\}", s["answer"].strip())
            assert s["correct"] == (boxed is not None and boxed.group(1) == answers[record["problem_id"]]), s
        counts.append(sum(s["correct"] for s in record["samples"]))
    assert 0 < sum(counts) < len(counts) * K and max(counts) > min(counts)  # mixed verdicts: a real check
    [metrics] = report_metrics(tmp_path / "run")
    m = len(counts)
    assert metrics["num_problems"] == m and metrics["samples"] == K
    assert metrics["avg_at_k"]["mean"] == pytest.approx(sum(counts) / (m * K))
    for k in (1, 2, 4):
        want = sum(1 - comb(K - c, k) / comb(K, k) for c in counts) / m
        assert metrics["pass_at"][str(k)]["mean"] == pytest.approx(want)
    assert metrics["pass_at"]["4"]["mean"] == pytest.approx(sum(c > 0 for c in counts) / m)
    assert sum(metrics["reasons"].values()) == m * K
    assert (tmp_path / "run" / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "| unlimited | 12 |" in (tmp_path / "run" / "report.md").read_text()


def test_endpoint_and_local_sampling_give_the_same_verdicts(served, tmp_path: Path) -> None:
    common = ["--data", str(served.bench), "--samples", str(K), "--max-tokens", "24", "--no-progress",
              "--thinking-budget", "-1"]
    assert main(["eval", "--base-url", served.url, "--model", "tiny", "--out", str(tmp_path / "http"), *common]) == 0
    assert main(["eval", "--model", str(served.model_dir), "--device", "cpu", "--out", str(tmp_path / "local"),
                 *common]) == 0
    keep = ("index", "seed", "correct", "reason", "finish_reason", "response_tokens", "answer")
    http, local = (sorted(lines(tmp_path / d / "samples.jsonl"), key=lambda r: r["problem_id"])
                   for d in ("http", "local"))
    assert [[{f: s[f] for f in keep} for s in r["samples"]] for r in http] == \
        [[{f: s[f] for f in keep} for s in r["samples"]] for r in local]


def test_budget_sweep_through_the_endpoint(served, tmp_path: Path) -> None:
    assert main(eval_args(served, tmp_path / "sweep", "--budgets", "0,8,-1")) == 0
    budgets = [m["thinking_budget"] for m in report_metrics(tmp_path / "sweep")]
    assert budgets == [0, 8, -1]
    records = lines(tmp_path / "sweep" / "samples.jsonl")
    assert sorted({r["thinking_budget"] for r in records}) == [-1, 0, 8] and len(records) == 3 * 12
    assert (tmp_path / "sweep" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_killed_subprocess_resumes_to_the_uninterrupted_report(served, tmp_path: Path) -> None:
    assert main(eval_args(served, tmp_path / "whole", "--concurrency", "2")) == 0
    out = tmp_path / "cut"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "thinkrl.cli", *eval_args(served, out, "--concurrency", "1")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = out / "samples.jsonl"
    while proc.poll() is None and not (samples.exists() and samples.read_text().count("\n") >= 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = samples.read_text().splitlines(keepends=True)
    finished = [line for line in before if line.endswith("\n")]
    assert 2 <= len(finished) < 12 and not (out / "report.json").exists()
    assert main(eval_args(served, out, "--concurrency", "3", "--resume")) == 0
    after = samples.read_text().splitlines(keepends=True)
    assert after[: len(finished)] == finished  # finished problems were kept, not sampled again
    assert len(after) == 12 and len({json.loads(x)["problem_id"] for x in after}) == 12
    assert report_metrics(out) == report_metrics(tmp_path / "whole")


class Crash(Exception):
    pass


class StopAfter:
    """A real sampler whose run crashes once ``n`` problems are recorded."""

    def __init__(self, sampler: EndpointSampler, n: int) -> None:
        self.sampler, self.n = sampler, n

    def run(self, jobs, on_done) -> None:
        count = 0

        def recorded(result) -> None:
            nonlocal count
            on_done(result)
            count += 1
            if count == self.n:
                raise Crash

        self.sampler.run(jobs, recorded)


def test_interrupted_run_then_resume_samples_only_the_rest(served, tmp_path: Path) -> None:
    spec = BenchmarkSpec(data=str(served.bench))
    problems = load_benchmark(spec)
    settings = SampleSettings(samples=K, max_tokens=24, seed=3)
    endpoint = EndpointSpec(served.url, served.model_name, concurrency=4)
    config = run_config(f"endpoint:{served.url}#tiny", spec, problems, settings, [-1])
    whole = run_eval(EndpointSampler(endpoint, settings), problems, config, tmp_path / "whole")
    with pytest.raises(Crash):
        run_eval(StopAfter(EndpointSampler(endpoint, settings), 5), problems, config, tmp_path / "cut")
    assert len(read_results(tmp_path / "cut" / "samples.jsonl")) == 5
    asked: list[int] = []

    class Counting(EndpointSampler):
        def run(self, jobs, on_done) -> None:
            asked.extend(job.index for job in jobs)
            super().run(jobs, on_done)

    resumed = run_eval(Counting(endpoint, settings), problems, config, tmp_path / "cut", resume=True)
    done_first = {r.problem_id for r in read_results(tmp_path / "cut" / "samples.jsonl")[:5]}
    assert len(asked) == 7 and not {problems[i].id for i in asked} & done_first
    assert resumed == whole


def test_retries_after_429_and_503_then_succeeds(served, serve_app, tmp_path: Path) -> None:
    serve, app_from_cli = serve_app
    app = app_from_cli(served.model_dir)
    failures = {"left": 3}

    @app.middleware("http")
    async def flaky(request, call_next):  # the real server, refusing its first three chat requests
        if request.url.path.endswith("/chat/completions") and failures["left"] > 0:
            failures["left"] -= 1
            status = 429 if failures["left"] % 2 else 503
            return JSONResponse({"error": {"message": "busy", "type": "rate_limit_error"}}, status_code=status)
        return await call_next(request)

    with serve(app) as base:
        args = eval_args(served, tmp_path / "run", "--concurrency", "1", "--retries", "3")
        args[args.index("--base-url") + 1] = f"{base}/v1"
        assert main(args) == 0
    assert failures["left"] == 0 and len(lines(tmp_path / "run" / "samples.jsonl")) == 12
    assert report_metrics(tmp_path / "run")[0]["num_problems"] == 12


def test_requests_in_flight_never_exceed_the_concurrency(served, serve_app, tmp_path: Path) -> None:
    serve, app_from_cli = serve_app
    app = app_from_cli(served.model_dir)
    seen = {"now": 0, "max": 0, "total": 0}

    @app.middleware("http")
    async def count(request, call_next):  # requests the real server is working on at once
        seen["now"] += 1
        seen["total"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        try:
            return await call_next(request)
        finally:
            seen["now"] -= 1

    with serve(app) as base:
        args = eval_args(served, tmp_path / "run", "--concurrency", "3")
        args[args.index("--base-url") + 1] = f"{base}/v1"
        assert main(args) == 0
    assert seen["total"] == 12 * K
    assert 1 < seen["max"] <= 3
