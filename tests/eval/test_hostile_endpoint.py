"""`thinkrl eval --base-url` against a misbehaving endpoint: a real HTTP server on loopback (`http.server` in a
thread) whose every chat request is answered by the test's ``behave(handler, n, body)``: error statuses with and
without Retry-After, malformed replies, a trickled answer, a reset connection, a flood of concurrent requests, a
Ctrl-C; and samples.jsonl files cut by an interrupted write."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_endpoint import Handler, fake_endpoint
from thinkrl.cli import main
from thinkrl.eval import endpoint
from thinkrl.eval.endpoint import EndpointError, EndpointSpec, post_with_retries

NUM_PROBLEMS, K = 6, 2


def reply(content: str | None = "r\u00e9ponse \u2192 \\boxed{4}", tokens: int = 5) -> dict[str, Any]:
    """A well-formed chat completion (non-ASCII: records hold multi-byte characters)."""
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3}}


def good(h: Handler, n: int) -> None:
    h.send(200, reply())


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    rows = [{"problem": f"What is {i} + {i % 3}? (problem {i})", "answer": "345"[i % 3]} for i in range(NUM_PROBLEMS)]
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_args(url: str, bench: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--base-url", url, "--model", "m", "--data", str(bench), "--samples", str(K), "--out", str(out),
            "--no-progress", "--retries", "1", *extra]


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


MALFORMED: dict[str, bytes | dict[str, Any]] = {
    "choice null": {"choices": [None]},
    "choices a string": {"choices": "abc"},
    "message a string": {"choices": [{"message": "hi", "finish_reason": "stop"}]},
    "content parts": {"choices": [{"message": {"content": [{"type": "text", "text": "4"}]}, "finish_reason": "stop"}]},
    "usage a list": {**reply(), "usage": [1]},
    "tokens text": {**reply(), "usage": {"completion_tokens": "many"}},
    "tokens negative": {**reply(), "usage": {"completion_tokens": -3}},
    "tokens infinite": b'{"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}], '
                       b'"usage": {"completion_tokens": 1e400}}',
    "tokens huge": b'{"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}], '
                   b'"usage": {"completion_tokens": 1' + b"0" * 400 + b"}}",
    "nested past the parser": b"[" * 100_000,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_reply_stops_with_one_line_and_keeps_the_records(name: str, bench: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def behave(h: Handler, n: int) -> None:  # two problems answered, then the malformed reply
        h.send(200, reply() if n < 2 * K else MALFORMED[name])

    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, tmp_path / "run", "--concurrency", "1")) == 2
        err = one_line_error(capsys)
        assert err.startswith(f"thinkrl eval: error: endpoint {server.url}/chat/completions returned "), err
        assert ("no JSON" if name.startswith("nested") else "malformed chat completion") in err
        assert len(records(tmp_path / "run")) == 2
        assert main(eval_args(server.url, bench, tmp_path / "run", "--resume")) == 2  # still malformed: no loss
        assert len(records(tmp_path / "run")) == 2


def test_unrecoverable_status_then_resume_finishes_without_duplicates(bench: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    key = {"ok": False}

    def behave(h: Handler, n: int) -> None:  # two problems answered, then 401 until the key is "fixed"
        h.send(200, reply()) if n < 2 * K or key["ok"] else h.send(401, {"error": {"message": "bad key"}})

    out = tmp_path / "run"
    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, out, "--concurrency", "1")) == 2
        assert one_line_error(capsys) == (f"thinkrl eval: error: endpoint {server.url}/chat/completions answered "
                                          "401: bad key (--traceback for details)")
        first = records(out)
        assert len(first) == 2 and not (out / "report.json").exists()  # no report from a partial run
        key["ok"], before = True, server.count
        assert main(eval_args(server.url, bench, out, "--resume")) == 0
        assert server.count - before == (NUM_PROBLEMS - 2) * K
    after = records(out)
    assert after[:2] == first and len({r["problem_id"] for r in after}) == NUM_PROBLEMS == len(after)
    [metrics] = json.loads((out / "report.json").read_text())["budgets"]
    assert metrics["num_problems"] == NUM_PROBLEMS and metrics["avg_at_k"]["mean"] == pytest.approx(2 / 6)


def test_problems_sampled_before_a_failure_are_judged_and_kept(bench: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    failed = threading.Event()
    judge = endpoint.judge_message

    def slow_judge(*args: Any, **kwargs: Any) -> Any:  # a judge slower than the endpoint (a code sandbox, say)
        failed.wait(30)
        return judge(*args, **kwargs)

    def behave(h: Handler, n: int) -> None:  # two problems answered, then a 401
        if n < 2 * K:
            return h.send(200, reply())
        h.send(401, {"error": {"message": "bad key"}})
        failed.set()

    monkeypatch.setattr(endpoint, "judge_message", slow_judge)
    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, tmp_path / "run", "--concurrency", "1")) == 2
    assert [len(r["samples"]) for r in records(tmp_path / "run")] == [K, K]  # both were in when the 401 came


def test_every_5xx_is_retried(bench: Path, tmp_path: Path) -> None:
    statuses = [520, 529, 501]  # a CDN's "origin down", "overloaded", then one more 5xx: retried as documented

    def behave(h: Handler, n: int) -> None:
        h.send(statuses[n], {"error": {"message": "busy"}}) if n < len(statuses) else h.send(200, reply())

    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, tmp_path / "run", "--concurrency", "1", "--retries", "3")) == 0
        assert server.count == len(statuses) + NUM_PROBLEMS * K
    assert len(records(tmp_path / "run")) == NUM_PROBLEMS


def test_retry_after_is_waited_for_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    answers = [(429, {"Retry-After": "1"}), (503, {}), (429, {"Retry-After": "3600"}), (200, {})]

    def behave(h: Handler, n: int) -> None:
        status, headers = answers[n]
        h.send(status, reply() if status == 200 else {"error": {"message": "slow down"}}, headers)

    async def post(spec: EndpointSpec) -> Any:
        async with httpx.AsyncClient() as client:
            return await post_with_retries(client, spec, {"model": "m"})

    with fake_endpoint(behave) as server, caplog.at_level(logging.WARNING, "thinkrl.eval.endpoint"):
        spec = EndpointSpec(server.url, "m", max_retries=3, backoff_s=0.01, max_backoff_s=1.5)
        assert asyncio.run(post(spec))["choices"][0]["message"]["content"] == reply()["choices"][0]["message"][
            "content"]
    waits = [r.getMessage().rsplit(" in ", 1)[1] for r in caplog.records]
    assert waits == ["1.0 s", "0.0 s", "1.5 s"]  # Retry-After 1; backoff 0.02 (no header); Retry-After capped


def test_a_trickled_answer_times_out_as_a_whole() -> None:
    def trickle(h: Handler, n: int) -> None:  # every byte well within the timeout, the whole answer far beyond it
        data = json.dumps(reply()).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        for byte in data:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.1)

    async def post(spec: EndpointSpec) -> Any:
        async with httpx.AsyncClient(timeout=spec.timeout_s) as client:
            return await post_with_retries(client, spec, {"model": "m"})

    with fake_endpoint(trickle) as server:
        spec = EndpointSpec(server.url, "m", max_retries=1, backoff_s=0.01, timeout_s=1.0)
        with pytest.raises(EndpointError, match=r"failed after 2 attempts \(no complete answer within 1 s\)"):
            asyncio.run(post(spec))
        assert server.count == 2


def test_a_connection_reset_mid_body_is_retried(bench: Path, tmp_path: Path) -> None:
    def behave(h: Handler, n: int) -> None:
        if n:
            return good(h, n)
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b'{"choices": [')
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        h.wfile.close()
        h.rfile.close()
        h.connection.close()

    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, tmp_path / "run", "--concurrency", "1")) == 0
        assert server.count == 1 + NUM_PROBLEMS * K
    assert len(records(tmp_path / "run")) == NUM_PROBLEMS


def test_concurrency_above_a_hundred_is_reached(tmp_path: Path) -> None:
    want = 120  # httpx's default pool holds 100 connections
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"{i} + 1?", "answer": "4"}) + "\n" for i in range(want // K)))
    seen = {"now": 0, "max": 0}
    cond = threading.Condition()

    def behave(h: Handler, n: int) -> None:  # each request waits (at most 10 s) until `want` are in flight
        with cond:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
            cond.notify_all()
            cond.wait_for(lambda: seen["max"] >= want, timeout=10)
            seen["now"] -= 1
        h.send(200, reply())

    with fake_endpoint(behave) as server:
        assert main(eval_args(server.url, bench, tmp_path / "run", "--concurrency", str(want))) == 0
    assert seen["max"] == want


def test_ctrl_c_during_a_remote_eval_leaves_whole_records(bench: Path, tmp_path: Path) -> None:
    release = threading.Event()

    def behave(h: Handler, n: int) -> None:  # three problems answered, then the server hangs until released
        if n >= 3 * K:
            release.wait(60)
        h.send(200, reply())

    out = tmp_path / "run"
    with fake_endpoint(behave) as server:
        cmd = [sys.executable, "-m", "thinkrl.cli", *eval_args(server.url, bench, out, "--concurrency", "2")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            samples = out / "samples.jsonl"
            while proc.poll() is None and not (samples.exists() and samples.read_text().count("\n") >= 3):
                time.sleep(0.01)
            while proc.poll() is None and server.count <= 3 * K:  # requests of the next problems are in flight
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, stderr[-2000:]
        assert f"finished problems are kept in {samples}" in stderr and "Traceback" not in stderr and stdout == ""
        text = samples.read_text()
        assert text.endswith("\n") and len(records(out)) == 3
        assert main(eval_args(server.url, bench, out, "--resume")) == 0
    assert len({r["problem_id"] for r in records(out)}) == NUM_PROBLEMS == len(records(out))
    assert records(out)[:3] == [json.loads(line) for line in text.splitlines()]


def _cut_run(url: str, bench: Path, out: Path, cut: Callable[[list[bytes]], bytes]) -> None:
    assert main(eval_args(url, bench, out)) == 0
    path = out / "samples.jsonl"
    path.write_bytes(cut(path.read_bytes().split(b"\n")[:-1]))
    (out / "report.json").unlink()


def test_whole_last_record_without_its_newline_is_kept(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with fake_endpoint(good) as server:
        _cut_run(server.url, bench, out, lambda lines: b"\n".join(lines[:4]))  # 4 whole records, the 4th unended
        kept = records(out)
        before = server.count
        assert main(eval_args(server.url, bench, out, "--resume")) == 0
        assert server.count - before == 2 * K  # only the 2 missing problems
    assert records(out)[:4] == kept and len({r["problem_id"] for r in records(out)}) == NUM_PROBLEMS
    assert len(records(out)) == NUM_PROBLEMS


def test_write_cut_inside_a_multibyte_character_is_dropped(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with fake_endpoint(good) as server:
        def cut(lines: list[bytes]) -> bytes:  # 3 records, then the 4th cut inside the 3 bytes of its first arrow
            return b"".join(line + b"\n" for line in lines[:3]) + lines[3][: lines[3].index("\u2192".encode()) + 1]

        _cut_run(server.url, bench, out, cut)
        before = server.count
        assert main(eval_args(server.url, bench, out, "--resume")) == 0
        assert server.count - before == 3 * K
    assert len({r["problem_id"] for r in records(out)}) == NUM_PROBLEMS == len(records(out))
