"""`thinkrl eval` refuses what it cannot honour, on one line with exit status 2 and before anything is sampled or
lost: a benchmark file whose ground truth the task's verifier cannot read, endpoint flags given for a local model,
a bad ``--timeout``, a reply over the size limit, a reply choice without a finish reason. The endpoint is a real
HTTP server on loopback whose every chat request is answered by the test's ``behave(handler, n)``."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_endpoint import Handler, fake_endpoint
from thinkrl.cli import main
from thinkrl.eval import endpoint
from thinkrl.eval.endpoint import EndpointError, EndpointSampler, EndpointSpec, post_with_retries
from thinkrl.model import ModelConfig, build_model, save_pretrained

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1)
NUM_PROBLEMS = 4


def reply(content: str = "\\boxed{5}", finish_reason: str | None = "stop") -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}}
    if finish_reason != "missing":
        choice["finish_reason"] = finish_reason
    return {"choices": [choice], "usage": {"completion_tokens": 3}}


def good(h: Handler, n: int) -> None:
    h.send(200, reply())


def problem_line(problem_id: str, task: str, ground_truth: dict[str, Any]) -> str:
    return json.dumps({"task": task, "id": problem_id, "prompt": "What is 2 + 3?", "ground_truth": ground_truth,
                       "difficulty": {}}) + "\n"


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(problem_line(f"p{i}", "arithmetic", {"expression": "2 + 3", "answer": 5})
                            for i in range(NUM_PROBLEMS)))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    save_pretrained(build_model(CFG, seed=0), path)
    return path


def status(argv: list[str]) -> int:
    """``thinkrl ARGV``'s exit status, also when argparse ends it (SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def endpoint_args(url: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--base-url", url, "--model", "m", "--data", str(data), "--samples", "2", "--out", str(out),
            "--no-progress", *extra]


def local_args(model_dir: Path, *extra: str) -> list[str]:
    return ["eval", "--model", str(model_dir), "--device", "cpu", "--task", "arithmetic", "--n", "2", "--samples",
            "1", "--max-new-tokens", "4", "--num-slots", "4", *extra]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("thinkrl eval: error: "), err
    return err


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


# 1. a data file whose ground truth the verifier cannot read

BAD_GROUND_TRUTH = [
    ("arithmetic", {"expression": "2 + 3"}, "ground truth has no 'answer' field"),
    ("math", {"solution": "5"}, "math ground truth needs a string 'answer'"),
    ("code", {"format": "apps"}, "APPS tests need 'inputs' and 'outputs'"),
]


@pytest.mark.parametrize(("task", "ground_truth", "message"), BAD_GROUND_TRUTH)
def test_a_ground_truth_the_verifier_cannot_read_is_refused_before_sampling(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str, ground_truth: dict[str, Any],
        message: str) -> None:
    # before: every sample was sent, then judged wrong (or the judge failed mid-run naming no problem)
    data = tmp_path / "bench.jsonl"
    data.write_text(problem_line("p1", "arithmetic", {"expression": "2 + 3", "answer": 5}) + "\n"
                    + problem_line("p7", task, ground_truth))
    with fake_endpoint(good) as server:
        assert status(endpoint_args(server.url, data, tmp_path / "run")) == 2
        assert server.count == 0
    err = one_line_error(capsys)
    assert f"{data}:line 3: problem 'p7' of task '{task}': {message}" in err
    assert not (tmp_path / "run").exists()


def test_a_local_eval_refuses_the_file_too(model_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # before: the local model's samples were all scored wrong ("truncated") and the run reported accuracy 0
    data = tmp_path / "bench.jsonl"
    data.write_text(problem_line("p7", "arithmetic", {"expression": "2 + 3"}))
    argv = ["eval", "--model", str(model_dir), "--device", "cpu", "--data", str(data), "--samples", "1",
            "--max-new-tokens", "4"]
    assert status(argv) == 2
    assert f"{data}:line 1: problem 'p7' of task 'arithmetic': ground truth has no 'answer' field" in one_line_error(
        capsys)


def test_fields_only_a_solution_trace_needs_may_be_missing(tmp_path: Path) -> None:
    # the verifier, not the trace writer (SFT's check), decides: arithmetic is judged by 'answer' alone
    data = tmp_path / "bench.jsonl"
    data.write_text(problem_line("p1", "arithmetic", {"answer": 5}))
    with fake_endpoint(good) as server:
        assert status(endpoint_args(server.url, data, tmp_path / "run")) == 0
    assert [s["correct"] for s in records(tmp_path / "run")[0]["samples"]] == [True, True]


# 2. and 3. endpoint flags: refused for a local model; --timeout

@pytest.mark.parametrize("flags", [["--concurrency", "2"], ["--retries", "0"], ["--timeout", "5"],
                                   ["--concurrency", "8", "--retries", "4"]])
def test_endpoint_flags_without_an_endpoint_are_refused(model_dir: Path, tmp_path: Path, flags: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # before: a local model ran and silently ignored them
    assert status(local_args(model_dir, *flags)) == 2
    names = [flag for flag in flags if flag.startswith("--")]
    verb = "applies" if len(names) == 1 else "apply"
    assert f"{', '.join(names)} {verb} only with --base-url" in one_line_error(capsys)


def test_endpoint_flags_reach_the_endpoint_spec_and_default_to_its_fields(bench: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    specs: list[EndpointSpec] = []

    class Recording(EndpointSampler):
        def __init__(self, spec: EndpointSpec, *args: Any) -> None:
            specs.append(spec)
            super().__init__(spec, *args)

    monkeypatch.setattr(endpoint, "EndpointSampler", Recording)
    with fake_endpoint(good) as server:
        assert status(endpoint_args(server.url, bench, tmp_path / "a")) == 0
        assert status(endpoint_args(server.url, bench, tmp_path / "b", "--concurrency", "3", "--retries", "1",
                                    "--timeout", "2.5")) == 0
    default = EndpointSpec(server.url, "m")
    assert [(s.concurrency, s.max_retries, s.timeout_s) for s in specs] == [
        (default.concurrency, default.max_retries, default.timeout_s), (3, 1, 2.5)]
    assert default.timeout_s == 600 and endpoint.MAX_REPLY_BYTES == 64 * 2**20


def test_timeout_bounds_a_request(bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    release = threading.Event()

    def hang(h: Handler, n: int) -> None:
        release.wait(30)
        good(h, n)

    with fake_endpoint(hang) as server:
        try:
            assert status(endpoint_args(server.url, bench, tmp_path / "run", "--concurrency", "1", "--retries", "0",
                                        "--timeout", "0.3")) == 2
        finally:
            release.set()
    assert "failed after 1 attempts (no complete answer within 0.3 s)" in one_line_error(capsys)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x", ""])
def test_a_bad_timeout_is_one_line(bench: Path, tmp_path: Path, value: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert status(endpoint_args("http://127.0.0.1:9/v1", bench, tmp_path / "run", "--timeout", value)) == 2
    assert f"--timeout must be a number of seconds > 0, got {value!r}" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


# 4. replies: a size limit, and a finish reason

def test_a_reply_declared_larger_than_the_limit_stops_the_run_and_keeps_the_records(
        bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limit = endpoint.MAX_REPLY_BYTES

    def behave(h: Handler, n: int) -> None:  # two problems answered, then a reply announced past the limit
        if n < 4:
            return good(h, n)
        h.head(200, {"Content-Length": str(limit + 1)})
        h.wfile.write(b"{" + b" " * 65536)
        h.close_connection = True

    with fake_endpoint(behave) as server:
        assert status(endpoint_args(server.url, bench, tmp_path / "run", "--concurrency", "1", "--retries",
                                    "2")) == 2
        assert server.count == 5  # not retried
    err = one_line_error(capsys)
    assert f"endpoint {server.url}/chat/completions sent a reply larger than {limit} bytes" in err
    assert len(records(tmp_path / "run")) == 2


def _chunked(h: Handler, size: int) -> None:
    h.head(200, {"Transfer-Encoding": "chunked"})
    for _ in range(0, size, 1000):
        h.wfile.write(b"3e8\r\n" + b" " * 1000 + b"\r\n")
    h.wfile.write(b"0\r\n\r\n")


def _gzipped(h: Handler, size: int) -> None:
    data = gzip.compress(json.dumps(reply()).encode() + b" " * size)  # small on the wire, large once decoded
    h.head(200, {"Content-Length": str(len(data)), "Content-Encoding": "gzip"})
    h.wfile.write(data)


@pytest.mark.parametrize("send", [_chunked, _gzipped])
def test_a_reply_read_past_the_limit_fails_without_retry(send: Callable[[Handler, int], None]) -> None:
    async def post(spec: EndpointSpec) -> Any:
        async with httpx.AsyncClient() as client:
            return await post_with_retries(client, spec, {"model": "m"})

    with fake_endpoint(lambda h, n: send(h, 50_000)) as server:
        spec = EndpointSpec(server.url, "m", max_retries=2, backoff_s=0.01, max_reply_bytes=10_000)
        with pytest.raises(EndpointError, match="sent a reply larger than 10000 bytes"):
            asyncio.run(post(spec))
        assert server.count == 1


@pytest.mark.parametrize("finish_reason", ["missing", None, ""])
def test_a_choice_without_a_finish_reason_is_malformed(bench: Path, tmp_path: Path, finish_reason: str | None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # before: judged "truncated" (wrong) without a word
    def behave(h: Handler, n: int) -> None:  # two problems answered, then a choice without its finish reason
        h.send(200, reply() if n < 4 else reply(finish_reason=finish_reason))

    with fake_endpoint(behave) as server:
        assert status(endpoint_args(server.url, bench, tmp_path / "run", "--concurrency", "1")) == 2
    err = one_line_error(capsys)
    assert (f"endpoint {server.url}/chat/completions returned a malformed chat completion: choices[0].finish_reason "
            "is missing or not a string") in err
    assert len(records(tmp_path / "run")) == 2
