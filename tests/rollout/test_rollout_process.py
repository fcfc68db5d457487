"""The process placement (`RolloutProcess`): same tokens as the in-process engine, weight pushes through shared
memory, errors from the child, and no hang and no orphan when the child or the parent dies.

One child serves the tests that leave it healthy (spawning costs seconds); the ones that kill or break a child
start their own. Timeouts below are generous bounds on a feature's own failure detection, not speed assertions.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_faults import failing_copy
from thinkrl.engine import EngineError, LLMEngine, Request, SamplingParams, make_budget_controller
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.engine import start_engine_client
from thinkrl.rollout.partial import ContinuedController
from thinkrl.rollout.process import RolloutProcess, start_engine_process
from thinkrl.rollout.specs import SamplingSpec
from thinkrl.tokenizer import load_tokenizer

TOK = load_tokenizer("builtin")
CFG = ModelConfig(vocab_size=TOK.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
SLOTS, MAX_LEN, SEED = 4, 96, 7
PROMPTS = ["What is 2 + 3?", "Sort the words: pear apple", "Hello", "Name a prime number."]


def _requests(tag: str, budget: int = 6) -> list[Request]:
    """Seeded requests with enforcing, reflecting budget controllers (forced tokens cross the boundary too)."""
    return [Request(TOK.encode(text), SamplingParams(max_new_tokens=24, temperature=1.0, seed=100 + i),
                    request_id=f"{tag}-{i}",
                    controller=make_budget_controller(TOK, budget, reflect=True, reflect_interval=2,
                                                      thinking_open=True))
            for i, text in enumerate(PROMPTS)]


def _summary(trajs, requests) -> list[tuple]:
    """What a trajectory records, and its budget controller's counts (``requests``: requests or controllers)."""
    controllers = [getattr(r, "controller", r) for r in requests]
    controllers = [getattr(c, "inner", c) for c in controllers]
    return [(t.response_ids, t.logprobs, t.response_mask, t.token_versions, t.finish_reason, t.text,
             c.thinking_tokens, c.num_reflections, c.forced_end)
            for t, c in zip(trajs, controllers, strict=True)]


def _perturbed(model: torch.nn.Module, scale: float) -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(int(scale * 1000))
    return [(name, p.detach() + scale * torch.randn(p.shape, generator=gen)) for name, p in model.named_parameters()]


def _gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model(CFG, seed=0).eval()


@pytest.fixture(scope="module")
def thread_loop(model):
    loop = EngineLoop(LLMEngine(copy.deepcopy(model).requires_grad_(False), TOK, num_slots=SLOTS,
                                max_seq_len=MAX_LEN, seed=SEED)).start()
    yield loop
    loop.stop()


@pytest.fixture(scope="module")
def client(model):
    client = start_engine_process(model, TOK, num_slots=SLOTS, max_seq_len=MAX_LEN, seed=SEED)
    yield client
    client.stop()


def test_process_placement_samples_the_same_tokens_as_the_thread_placement(client, thread_loop, model):
    thread_requests, process_requests = _requests("t"), _requests("p")
    want = _summary(thread_loop.generate(thread_requests), thread_requests)
    got = _summary(client.generate(process_requests), process_requests)
    assert got == want
    assert any(reflections > 0 for *_, reflections, _ in got), "no forced reflection: the test proves less"
    # Pushes keep them equal (the same weights reach both engines, tagged with the same version).
    version = client.version + 1
    weights = _perturbed(model, 0.05)
    assert client.update_weights(weights, version) == thread_loop.update_weights(weights, version)
    thread_requests, process_requests = _requests("t2"), _requests("p2")
    assert _summary(client.generate(process_requests), process_requests) == _summary(
        thread_loop.generate(thread_requests), thread_requests)


def test_a_partial_rollouts_continued_controller_crosses_and_keeps_its_counts(client, thread_loop):
    """A continuation (`ContinuedController`: the original controller shown the earlier pieces) samples the same
    tokens as in-process, and the original controller's counts are the child's when the piece ends."""
    def continuation(tag: str) -> Request:
        inner = make_budget_controller(TOK, 12, reflect=True, reflect_interval=3, thinking_open=True)
        inner.forced_tokens([40])  # the first piece sampled one thinking token
        params = SamplingParams(max_new_tokens=20, temperature=1.0, seed=5)
        return Request(TOK.encode("Hi") + [40], params, request_id=tag, controller=ContinuedController(inner, [40]))

    want, got = continuation("t-cont"), continuation("p-cont")
    assert _summary(client.generate([got]), [got.controller]) == _summary(thread_loop.generate([want]),
                                                                         [want.controller])
    assert got.controller.inner.thinking_tokens > 1


def test_a_push_changes_the_outputs_and_every_token_records_its_version(client, model):
    before = client.generate(_requests("before", budget=-1))
    version = client.version + 3
    assert client.update_weights(_perturbed(model, 0.5), version, timeout=60) == len(list(model.parameters()))
    assert client.version == version
    after = client.generate(_requests("after", budget=-1))
    assert [t.response_ids for t in after] != [t.response_ids for t in before]
    assert all(t.token_versions == [version] * len(t.response_ids) for t in after)


def test_each_push_reports_the_engine_steps_the_child_ran(client, thread_loop, model):
    """Two requests of 5 and 9 tokens (no stop token) take 9 engine steps: a prefill step gives each its first token,
    then one decode step per further token of the longer one. Both placements count them the same."""
    def run(engine: RolloutProcess | EngineLoop, tag: str) -> int:
        weights = _perturbed(model, 0.01)
        engine.update_weights(weights, engine.version + 1)
        before = engine.num_steps
        engine.generate([Request(TOK.encode("Hi"), SamplingParams(max_new_tokens=n, temperature=1.0, seed=n,
                                                                  stop_token_ids=()), request_id=f"{tag}-{n}")
                         for n in (5, 9)])
        engine.update_weights(weights, engine.version + 1)
        return engine.num_steps - before

    assert run(client, "steps-p") == run(thread_loop, "steps-t") == 9


def test_events_stream_and_an_interrupt_delivers_the_partial_trajectory(client):
    long = SamplingParams(max_new_tokens=MAX_LEN - 8, temperature=1.0, seed=3, stop_token_ids=())
    request = Request([5, 6, 7], long, request_id="stream-me")
    tokens, last = [], None
    for event in client.stream([request]):
        tokens += event.token_ids
        if len(tokens) >= 3 and last is None:
            client.interrupt("stream-me")
            last = len(tokens)
        if event.finished:
            trajectory = event.trajectory
    assert trajectory.finish_reason == "abort"
    # The partial holds every streamed token (and may hold one more: EngineLoop drops the event of a step that
    # raced the interrupt, while the trajectory keeps its token), and stops well before the limit.
    streamed = len(tokens)
    assert trajectory.response_ids[:streamed] == tokens and last <= streamed <= len(trajectory.response_ids)
    assert len(trajectory.response_ids) <= streamed + 1 < MAX_LEN - 8


def test_a_bad_push_raises_valueerror_in_the_parent_and_the_child_keeps_working(client, model):
    weights = _perturbed(model, 0.1)
    name, tensor = weights[0]
    with pytest.raises(ValueError, match=f"{name!r} has shape"):
        client.update_weights([(name, tensor[:-1])] + weights[1:], client.version + 1)
    with pytest.raises(ValueError, match="parameters missing"):
        client.update_weights(weights[1:], client.version + 1)
    # raised in the child:
    with pytest.raises(ValueError, match=r"older than the engine.s \d+ \(in the rollout process\)"):
        client.update_weights(weights, client.version - 1)
    with pytest.raises(ValueError, match=r"max_seq_len.*\(in the rollout process\)"):  # refused by the child's engine
        client.generate([Request([5] * (MAX_LEN + 1), SamplingParams(max_new_tokens=4))])
    with pytest.raises(TypeError, match="only ThinkingBudgetController"):
        client.generate([Request([5, 6], controller=object())])  # type: ignore[arg-type]
    assert client.is_running
    assert all(t.finish_reason in ("stop", "length", "budget") for t in client.generate(_requests("still")))
    assert client.update_weights(weights, client.version + 1) == len(weights)  # a failed push left nothing behind


def test_a_push_the_child_cannot_acknowledge_times_out_and_the_next_push_waits_for_it(client, model):
    """SIGSTOP freezes the child (a hung push); the caller gets TimeoutError, not a hang. Once it runs again the
    pending push lands, and the next push (which waited for it before reusing the buffer) lands after it."""
    first, second = client.version + 1, client.version + 2
    os.kill(client.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match="not applied within 1.0 s"):
            client.update_weights(_perturbed(model, 0.2), first, timeout=1.0)
    finally:
        os.kill(client.pid, signal.SIGCONT)
    client.update_weights(_perturbed(model, 0.3), second, timeout=60)
    assert client.version == second
    assert all(t.token_versions == [second] * len(t.response_ids) for t in client.generate(_requests("thawed")))


def test_an_engine_failure_in_the_child_reaches_the_parent_with_its_traceback(model):
    # (a prompt token past the embedding used to be the trigger; the engine now refuses such a request alone)
    client = start_engine_process(failing_copy(model), TOK, num_slots=SLOTS, max_seq_len=MAX_LEN, seed=SEED)
    try:
        with pytest.raises(EngineError, match="IndexError") as failed:
            client.generate([Request([5, 6], SamplingParams(max_new_tokens=4))])
        assert "traceback in the rollout process" in str(failed.value) and "forward_cached" in str(failed.value)
        assert _wait_until(lambda: not client.is_running, 30)
        with pytest.raises(EngineError, match="IndexError"):
            client.update_weights(_perturbed(model, 0.1), 1)
    finally:
        client.stop()
    assert not [p for p in multiprocessing.active_children() if p.pid == client.pid] and _gone(client.pid)
    with pytest.raises(EngineError, match="IndexError"):  # a stopped client keeps saying why it failed
        client.generate(_requests("late"))
    client.stop()  # twice is fine


def test_a_killed_child_fails_every_wait_with_the_signal_and_leaves_nothing(model):
    client = start_engine_process(model, TOK, num_slots=SLOTS, max_seq_len=1024, seed=SEED)
    long = SamplingParams(max_new_tokens=1000, temperature=1.0, seed=1, stop_token_ids=())
    try:
        events = client.stream([Request([5, 6, 7], long, request_id="doomed")])
        next(events)
        os.kill(client.pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="killed by signal SIGKILL"):
            for _ in events:
                pass
        with pytest.raises(EngineError, match="SIGKILL"):
            client.update_weights(_perturbed(model, 0.1), 1, timeout=600)
        with pytest.raises(EngineError, match="SIGKILL"):
            client.generate(_requests("after-death"))
    finally:
        client.stop()
    assert not [p for p in multiprocessing.active_children() if p.pid == client.pid] and _gone(client.pid)


def test_a_failing_sink_fails_every_waiter_and_stop_ends_the_child(model):
    client = start_engine_process(model, TOK, num_slots=SLOTS, max_seq_len=MAX_LEN, seed=SEED)

    def broken_sink(item: object) -> None:
        raise ValueError("a broken sink")

    try:
        waiting = client.stream(_requests("waiting"))
        client.submit(_requests("broken"), broken_sink)
        with pytest.raises(EngineError, match="receiver thread failed: ValueError"):
            list(waiting)  # its events would never come: it fails instead of waiting forever
        assert not client.is_running
    finally:
        client.stop()
    assert not [p for p in multiprocessing.active_children() if p.pid == client.pid] and _gone(client.pid)
    with pytest.raises(EngineError, match="receiver thread failed"):
        client.generate(_requests("late"))


def test_a_clean_stop_is_never_reported_as_a_hang(model, caplog):
    # The receiver thread and `stop` both reap the child; before the reaping lock, the loser of that race read a
    # child that had exited cleanly as alive, warned "did not stop within 10 s" and sent it SIGTERM.
    for attempt in range(4):
        client = start_engine_process(model, TOK, num_slots=SLOTS, max_seq_len=MAX_LEN, seed=SEED)
        try:
            client.generate(_requests(f"clean{attempt}"))
        finally:
            with caplog.at_level("WARNING", logger="thinkrl.rollout.process"):
                client.stop()
        assert client._process.exitcode == 0  # it left on the Stop command, not on a signal
        assert "did not stop" not in caplog.text
        caplog.clear()


PARENT = """
import sys, torch
from thinkrl.engine import Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.process import start_engine_process
from thinkrl.tokenizer import load_tokenizer

if __name__ == "__main__":
    tok = load_tokenizer("builtin")
    config = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    client = start_engine_process(build_model(config, seed=0), tok, num_slots=2, max_seq_len=4096, seed=0)
    print(client.pid, flush=True)
    try:
        while True:  # long generations, until a signal ends this process
            client.generate([Request([5, 6], SamplingParams(max_new_tokens=4000, stop_token_ids=()))])
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    finally:
        client.stop()
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["parent-killed", "ctrl-c"])
def test_a_parent_that_dies_or_is_interrupted_leaves_no_rollout_process(tmp_path, signum):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        child_pid = int(parent.stdout.readline())
        time.sleep(0.5)  # inside a generation
        parent.send_signal(signum)
        out, err = parent.communicate(timeout=60)
        assert _wait_until(lambda: _gone(child_pid), 60), f"rollout process {child_pid} outlived its parent"
    finally:
        parent.kill()
        parent.wait()
    if signum == signal.SIGINT:
        assert parent.returncode != 0 and "interrupted" in out and "KeyboardInterrupt" in err
        assert "Traceback" not in err.split("KeyboardInterrupt")[1]  # one clear exit, no second error after it


def test_start_up_failure_is_an_engineerror_naming_the_cause(client, model):
    with pytest.raises(EngineError, match="during start-up: ValueError: num_slots must be >= 1"):
        start_engine_process(model, TOK, num_slots=0, max_seq_len=MAX_LEN, seed=SEED)
    assert [p.pid for p in multiprocessing.active_children() if p.name == "thinkrl-rollout"] == [client.pid]


@pytest.mark.parametrize("placement", ["thread", "process"])
def test_sampling_compile_decode_reaches_the_engine_of_either_placement(client, placement):
    """``sampling.compile_decode`` is given to the engine in the thread and in the child: an MoE policy, which the
    compiled decode step refuses, fails the start with that reason (a flag lost on the way starts an eager engine)."""
    moe = build_model(ModelConfig(vocab_size=TOK.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, num_experts=4, num_experts_per_tok=2,
                                  moe_intermediate_size=32), seed=0)
    sampling = SamplingSpec(num_slots=2, compile_decode=True)
    error = ValueError if placement == "thread" else EngineError
    with pytest.raises(error, match="cannot compile the decode step: MoE"):
        start_engine_client(moe, TOK, sampling, MAX_LEN, SEED, placement).stop()
    start_engine_client(moe, TOK, SamplingSpec(num_slots=2), MAX_LEN, SEED, placement).stop()  # eager: starts
    assert [p.pid for p in multiprocessing.active_children() if p.name == "thinkrl-rollout"] == [client.pid]


def test_client_type_is_the_process_client(client):
    assert isinstance(client, RolloutProcess) and client.pid != os.getpid() and client.is_running


def test_a_policy_that_does_not_pickle_is_a_typeerror_before_any_process_starts():
    from thinkrl.model import compile_pointwise

    policy = build_model(CFG, seed=0)
    compile_pointwise(policy)  # compiled kernels are process-local: they cannot cross
    with pytest.raises(TypeError, match="cannot be copied to the rollout process.*placement: thread"):
        start_engine_process(policy, TOK, num_slots=SLOTS, max_seq_len=MAX_LEN, seed=SEED)


UNGUARDED = """
# A script that starts a rollout process at import time, without an `if __name__ == "__main__":` guard.
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.process import start_engine_process
from thinkrl.tokenizer import load_tokenizer

tok = load_tokenizer("builtin")
config = ModelConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2)  # its pickle is far over a pipe's 64 KiB
client = start_engine_process(build_model(config, seed=0), tok, num_slots=2, max_seq_len=64, seed=0)
client.stop()
"""


def test_a_child_that_dies_importing_the_main_module_fails_the_start_instead_of_hanging(tmp_path):
    # The spawned child imports the parent's main module before it reads its arguments; here that import starts a
    # process again, which Python refuses, and the child exits. With the model in the arguments, the parent blocked
    # forever writing them into the pipe nobody read.
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("starting a rollout process from an unguarded script hung")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("thinkrl.engine.loop.EngineError: the rollout process (pid ")
    assert "exited with code 1 before its engine started" in last and '`if __name__ == "__main__":`' in last
    assert "bootstrapping phase" in done.stderr  # the child's own error, on the stderr the message points to
