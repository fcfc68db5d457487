"""Ctrl-C (SIGINT) and SIGTERM end a real `thinkrl` process with one line, exit status 128 + the signal, no
traceback, the command's own cleanup run (``finally`` blocks, the RL loop's "interrupted" handling), and the last
checkpoint resumable. Also when a library turned the interrupt into an error of its own (DCP's save reports a
KeyboardInterrupt inside ``torch.save`` as a CheckpointException whose message is a RuntimeError about positions)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

DEADLINE_S = 30  # "ends within seconds": generous slack for a loaded 2-core machine
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
MICRO = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1}


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and reaped on the way out if a check failed while it still ran."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _sft_recipe(tmp_path: Path, steps: int) -> dict:
    return {"name": "s", "model": {"init": MICRO, "device": "cpu"},
            "data": {"task": "arithmetic", "num_train": 60, "num_test": 4, "seed": 0,
                     "difficulty": {"num_terms": 2, "max_number": 9}},
            "epochs": 100_000, "optim": {"lr": 3e-3, "warmup_steps": 0, "schedule": "constant"},
            "trainer": {"steps": steps, "micro_batch_tokens": 256, "log_every": 1, "save_every": 2,
                        "output_dir": str(tmp_path / "run")}}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_sft_run_ends_with_one_line_and_resumes(tmp_path: Path, signum: signal.Signals,
                                                                wait_for_step) -> None:
    recipe = _sft_recipe(tmp_path, steps=1_000_000)
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.Popen([sys.executable, "-m", "thinkrl.cli", "sft", str(path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _reaped(proc):
        wait_for_step(proc, tmp_path / "run", 5)  # the checkpoint of step 4 is on disk
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert stderr.splitlines()[-1] == f"thinkrl sft: interrupted ({name})", stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    saved = int((tmp_path / "run" / "checkpoints" / "latest").read_text().strip().rsplit("-", 1)[1])
    assert saved >= 4 and saved % 2 == 0
    recipe["trainer"].update(steps=saved + 2, resume=True)
    path.write_text(yaml.safe_dump(recipe))
    resumed = subprocess.run([sys.executable, "-m", "thinkrl.cli", "sft", str(path)], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed SFT at step {saved}" in resumed.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [saved + 1, saved + 2] and steps.count(saved + 1) == 1


WRAPPING_COMMAND = """
import sys, time, types
from thinkrl import cli

class CheckpointException(BaseException):  # what torch.distributed.checkpoint raises, a BaseException
    pass

def run(args):
    print("ready", flush=True)
    try:
        time.sleep(120)
    except KeyboardInterrupt as error:  # a library reporting the interrupt as its own failure
        raise CheckpointException("RuntimeError: unexpected pos 704 vs 598") from error
    return 0

module = types.ModuleType("wrapping_command")
module.add_arguments, module.run = lambda parser: None, run
sys.modules["wrapping_command"] = module
cli.COMMANDS["wrapping"] = ("wrapping_command", "a command whose library wraps the interrupt")
sys.exit(cli.main(["wrapping"]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupt_a_library_turned_into_its_own_error_is_still_reported_as_one(signum: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRAPPING_COMMAND], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with _reaped(proc):
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.2)  # inside the sleep
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 128 + signum, stderr
    assert stderr.splitlines() == [f"thinkrl wrapping: interrupted ({signal.Signals(signum).name})"]


HANGING_CLEANUP = """
import sys, time, types
from thinkrl import cli

def run(args):
    print("ready", flush=True)
    try:
        time.sleep(120)
    finally:
        print("cleaning up", flush=True)
        for _ in range(120):  # a cleanup that never ends (a C call that does not return would be the same)
            try:
                time.sleep(1)
            except KeyboardInterrupt:
                pass
    return 0

cli.FORCE_EXIT_S = float(sys.argv[1])
module = types.ModuleType("hanging_command")
module.add_arguments, module.run = lambda parser: None, run
sys.modules["hanging_command"] = module
cli.COMMANDS["hanging"] = ("hanging_command", "a command whose cleanup hangs")
sys.exit(cli.main(["hanging"]))
"""


@pytest.mark.parametrize(("signals", "force_after_s", "said"), [
    ([signal.SIGTERM], 2, "thinkrl: SIGTERM 2 s ago: exiting without waiting for the cleanup"),
    ([signal.SIGINT, signal.SIGINT], 600, "thinkrl: SIGINT again: exiting without waiting for the cleanup"),
], ids=["after-the-grace", "second-signal"])
def test_a_cleanup_that_hangs_does_not_keep_an_interrupted_command_alive(signals: list[signal.Signals],
                                                                         force_after_s: int, said: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HANGING_CLEANUP, str(force_after_s)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _reaped(proc):
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.2)  # inside the sleep
        proc.send_signal(signals[0])
        assert proc.stdout.readline() == "cleaning up\n"
        for signum in signals[1:]:
            proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=DEADLINE_S + force_after_s if len(signals) == 1 else DEADLINE_S)
    assert proc.returncode == 128 + signals[0], stderr
    lines = stderr.splitlines()
    assert lines[0] == said
    if len(signals) == 1:  # past the grace: where the cleanup hung, to debug it
        assert lines[1] == "thinkrl: where each thread was:"
        assert any(line.strip().startswith('File "<string>", line 13 in run') for line in lines), stderr
    else:  # a second Ctrl-C: the user wants out, not a dump
        assert lines == [said]
