"""The report's maths by hand on a constructed samples.jsonl, resume bookkeeping, and bad input at the CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from thinkrl.cli import main
from thinkrl.eval.benchmark import BenchmarkSpec
from thinkrl.eval.harness import pending_jobs, prepare_out, run_config, run_eval
from thinkrl.eval.metrics import estimate
from thinkrl.eval.samplers import SampleSettings
from thinkrl.tasks.dataset import generate_dataset, write_jsonl

CORRECT = [1, 2, 2, 3, 2]  # correct samples of 5 problems, 4 samples each


class NeverCalled:
    def run(self, jobs, on_done) -> None:
        raise AssertionError(f"nothing should be sampled, got {len(jobs)} jobs")


def constructed_run(tmp_path: Path):
    problems = generate_dataset("arithmetic", 5, 0, "test", {"num_terms": 2, "max_number": 5})
    out = tmp_path / "run"
    out.mkdir()
    rows = []
    for problem, c in zip(problems, CORRECT, strict=True):
        samples = [{"index": j, "seed": j, "correct": j < c, "reason": "correct" if j < c else "wrong value",
                    "finish_reason": "stop", "response_tokens": 10 + j, "thinking_tokens": j, "answer": "x"}
                   for j in range(4)]
        rows.append({"problem_id": problem.id, "task": "arithmetic", "thinking_budget": -1, "samples": samples})
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = BenchmarkSpec(task="arithmetic", n=5, seed=0)
    config = run_config("endpoint:http://x/v1#m", spec, problems, SampleSettings(samples=4), [-1])
    return problems, config, out


def test_report_of_a_constructed_file_by_hand(tmp_path: Path) -> None:
    problems, config, out = constructed_run(tmp_path)
    report = run_eval(NeverCalled(), problems, config, out, resume=True)
    [m] = report.budgets
    # avg@4 per problem: .25 .5 .5 .75 .5 -> mean .5; s = sqrt(2 * .25^2 / 4) = .1767767; half = 1.959964 s / sqrt 5
    assert m.avg_at_k.mean == pytest.approx(0.5)
    assert (m.avg_at_k.low, m.avg_at_k.high) == pytest.approx((0.5 - 0.1549492, 0.5 + 0.1549492), abs=1e-6)
    # pass@1 is avg@k; pass@2 per problem: 1 - C(4-c, 2) / 6 = .5, 5/6, 5/6, 1, 5/6 -> mean .8;
    # s = sqrt((.3^2 + 3 (1/30)^2 + .2^2) / 4) = .1825742; half = 1.959964 s / sqrt 5 = .1600300
    assert m.pass_at["1"] == m.avg_at_k
    assert m.pass_at["2"].mean == pytest.approx(0.8)
    assert (m.pass_at["2"].low, m.pass_at["2"].high) == pytest.approx((0.8 - 0.1600300, 0.8 + 0.1600300), abs=1e-6)
    assert (m.pass_at["4"].mean, m.pass_at["4"].low, m.pass_at["4"].high) == (1.0, 1.0, 1.0)  # every c > 0
    assert list(m.pass_at) == ["1", "2", "4"]
    assert m.mean_response_tokens == pytest.approx(11.5) and m.mean_thinking_tokens == pytest.approx(1.5)
    assert m.reasons == {"correct": 10, "wrong value": 10} and m.truncated == 0.0
    table = (out / "report.md").read_text()
    assert "| unlimited | 5 | 0.500 [0.345, 0.655] | 0.500 [0.345, 0.655] | 0.800 [0.640, 0.960] |" in table
    assert json.loads((out / "report.json").read_text())["budgets"][0]["pass_at"]["2"]["mean"] == pytest.approx(0.8)


def test_intervals_clip_to_the_unit_range_and_need_two_problems() -> None:
    wide = estimate([0.0, 1.0])  # mean .5, s = .7071068, half = 1.959964 * .5 = .98 -> clipped
    assert (wide.low, wide.high) == (0.0, 1.0)
    one = estimate([0.75])
    assert (one.mean, one.low, one.high) == (0.75, None, None)


def test_an_incomplete_last_line_is_dropped_and_sampled_again(tmp_path: Path) -> None:
    problems, config, out = constructed_run(tmp_path)
    text = (out / "samples.jsonl").read_text()
    cut = text[: text.rindex("\n", 0, len(text) - 1) + 40]  # the last record cut off mid-write
    (out / "samples.jsonl").write_text(cut)
    done = prepare_out(out, config, resume=True)
    assert len(done) == 4 and (out / "samples.jsonl").read_text().count("\n") == 4
    assert [job.problem.id for job in pending_jobs(problems, [-1], done)] == [problems[4].id]


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path: Path) -> None:
    problems, config, out = constructed_run(tmp_path)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"problem_id": "x"}\n'
    (out / "samples.jsonl").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"samples.jsonl:line 2: not a sample record"):
        run_eval(NeverCalled(), problems, config, out, resume=True)


def test_a_unit_recorded_twice_is_refused_before_sampling(tmp_path: Path) -> None:
    problems, config, out = constructed_run(tmp_path)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    (out / "samples.jsonl").write_text("".join(lines[:2] + lines[:1]))  # 3 units left to sample, one record twice
    first = json.loads(lines[0])["problem_id"]
    with pytest.raises(ValueError, match=rf"records problem {first} \(budget -1\) twice"):
        run_eval(NeverCalled(), problems, config, out, resume=True)  # (NeverCalled: sampling would fail the test)


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_a_used_folder(tmp_path: Path) -> None:
    problems, config, out = constructed_run(tmp_path)
    run_eval(NeverCalled(), problems, config, out, resume=True)
    with pytest.raises(ValueError, match="pass --resume"):
        run_eval(NeverCalled(), problems, config, out)
    other = config.model_copy(update={"samples": 2})
    with pytest.raises(ValueError, match="settings differ .*samples: 4 -> 2"):
        run_eval(NeverCalled(), problems, other, out, resume=True)


def cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert "bench.jsonl does not exist" in cli_error(capsys, [*base, "--data", str(tmp_path / "bench.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": oops\n')
    assert "bad.jsonl:line 2: invalid JSON" in cli_error(capsys, [*base, "--data", str(bad)])
    assert "unknown task 'nope'" in cli_error(capsys, [*base, "--task", "nope"])
    assert "needs --out" in cli_error(capsys, [a for a in base if a not in ("--out", str(tmp_path / "o"))]
                                      + ["--task", "arithmetic"])


def test_unreachable_endpoint_fails_after_the_retries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    data = tmp_path / "bench.jsonl"
    write_jsonl(generate_dataset("arithmetic", 2, 0, "test", {}), data)
    err = cli_error(capsys, ["eval", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--data", str(data),
                             "--samples", "1", "--retries", "1", "--out", str(tmp_path / "o"), "--no-progress"])
    assert f"127.0.0.1:{port}/v1/chat/completions failed after 2 attempts (ConnectError" in err


def test_unknown_model_at_the_endpoint_fails_at_once(served, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    err = cli_error(capsys, ["eval", "--base-url", served.url, "--model", "not-served", "--data", str(served.bench),
                             "--samples", "1", "--out", str(tmp_path / "o"), "--no-progress", "--retries", "0"])
    assert "answered 404" in err and "not-served" in err
