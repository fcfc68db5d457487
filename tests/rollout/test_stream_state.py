"""The streaming rollout's checkpoint state against a real engine loop (a tiny random model): a driver's state,
taken mid-run and passed through JSON, restored into a fresh driver gives back the same buffered groups and the
same partial responses, which continue under the new weights keeping every token so far with its log-prob and
version; groups already past the staleness bound at restore are dropped, counted, and their prompts sampled again;
a cursor without the state (an older checkpoint) restores the prompt source alone; multi-turn (agent) groups are
saved as their prompts and sampled again first."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.engine.budget import ThinkingBudgetController, budget_vocab
from thinkrl.engine.loop import EngineLoop
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout import PromptCursor, RewardSpec, RolloutSpec, SamplingSpec, StreamingDriver
from thinkrl.rollout.agent_spec import AgentSpec
from thinkrl.rollout.agent_streaming import AgentStreamingDriver
from thinkrl.rollout.partial import controller_counts
from thinkrl.rollout.stream_state import STATE_KEY, split_state
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
TOK = load_tokenizer("builtin")
PROBLEMS = generate_dataset("arithmetic", 40, 0, "train", {"num_terms": 2, "max_number": 5})
SAMPLING = SamplingSpec(temperature=1.0, max_new_tokens=12, num_slots=4, thinking_budgets=[8, -1])
REWARD = RewardSpec(max_response_len=12, overlong_cache_len=4)
ROLLOUT = RolloutSpec(group_size=2, prompts_per_step=1, dynamic_sampling=False, mode="streaming", max_staleness=2,
                      round_tokens=6)
WAIT_S = 60  # generous: a failure must surface within this, never hang the suite


def _loop() -> EngineLoop:
    return EngineLoop(LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=4, max_seq_len=128),
                      idle_wait_s=0.05).start()


@pytest.fixture
def loop() -> Iterator[EngineLoop]:
    engine_loop = _loop()
    yield engine_loop
    engine_loop.stop()


@pytest.fixture
def mid_run() -> Iterator[tuple[dict, EngineLoop]]:
    """A state saved mid-run (`_saved_mid_run`) with a buffered group and partial responses, and its engine loop.
    Whether the round-token pause finds responses in flight depends on thread timing (on a loaded box they can all
    finish first): the scenario is set up again, on a fresh engine, up to 5 times."""
    for _ in range(5):
        engine_loop = _loop()
        state = _saved_mid_run(engine_loop)
        in_flight = state[STATE_KEY]["in_flight"]
        if state[STATE_KEY]["buffered"] and any(s["pieces"] for g in in_flight for s in g["samples"]):
            break
        engine_loop.stop()
    else:
        pytest.fail("5 runs saved no state with both a buffered group and a partial response")
    yield state, engine_loop
    engine_loop.stop()


def _driver(loop: EngineLoop, start_version: int = 0) -> StreamingDriver:
    return StreamingDriver(loop, TOK, PromptCursor(PROBLEMS, 0), ROLLOUT, SAMPLING, REWARD, seed=0,
                           start_version=start_version, poll_s=0.05)


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _weights(seed: int) -> list:
    return list(build_model(CFG, seed=seed).state_dict().items())


def _saved_mid_run(loop: EngineLoop) -> dict:
    """A driver's state (through JSON) once it has a buffered group and partial responses: a batch taken, then
    a push (version 1), then the round-token pause interrupts what is in flight (the snapshot itself interrupts
    nothing)."""
    driver = _driver(loop).start()
    try:
        driver.next_batch(1)
        driver.push_weights(_weights(1), version=1)  # interrupts what is in flight: continued with version 1
        _wait_for(lambda: driver._holding and not driver.num_in_flight and not loop.engine.has_unfinished(),
                  "the rollout to pause")
        state = json.loads(json.dumps(driver.state()))
    finally:
        driver.close()
    assert state["epoch"] == 0 and state["index"] >= 3  # the prompt source's own state is still there
    return state


def _response(sample: dict) -> tuple[list[int], list[float], list[int]]:
    pieces = sample["pieces"]
    return ([t for p in pieces for t in p["response_ids"]], [x for p in pieces for x in p["logprobs"]],
            [v for p in pieces for v in p["token_versions"]])


def _replayed(ids: list[int], budget: int, thinking_open: bool) -> dict:
    """The counts (`controller_counts`) of one counting controller shown ``ids`` token by token as the engine shows
    them (``replacement_tokens`` before a sampled token is appended, ``forced_tokens`` after)."""
    controller = ThinkingBudgetController(budget_vocab(TOK), budget, enforce=False, thinking_open=thinking_open)
    for i, token in enumerate(ids):
        assert not controller.replacement_tokens(ids[:i], token)
        if token not in TOK.stop_token_ids:
            assert not controller.forced_tokens(ids[:i + 1])
    return controller_counts(controller)


def _without_group_ids(groups: list[dict]) -> list[dict]:
    """Saved groups with the trajectories' group ids blanked (a restore gives groups new ids)."""
    def blank(traj: dict | None) -> dict | None:
        return None if traj is None else {**traj, "group_id": 0}
    return [{**g, "finished": [blank(t) for t in g["finished"]],
             "samples": [{**s, "result": blank(s["result"])} for s in g["samples"]]} for g in groups]


def test_restored_driver_has_the_same_groups_and_continues_partial_samples_exactly(mid_run: tuple) -> None:
    state, loop = mid_run
    saved = state[STATE_KEY]
    loop.update_weights(_weights(2), version=2)  # the resumed weights
    source_state, stream = split_state(state)
    assert source_state == {"epoch": state["epoch"], "index": state["index"]}
    driver = _driver(loop, start_version=2)
    driver.restore(stream)
    again = json.loads(json.dumps(driver.state()))[STATE_KEY]  # before it starts: what was put back, saved again
    assert _without_group_ids(again["buffered"]) == _without_group_ids(saved["buffered"])  # renumbered, no more
    assert _without_group_ids(again["in_flight"]) == _without_group_ids(saved["in_flight"])
    partial = [s for g in saved["in_flight"] for s in g["samples"] if s["result"] is None]
    assert driver.num_in_flight == len(partial)  # every unfinished response was resubmitted
    for sample in partial:  # the counts saved are those of the tokens saved
        assert sample["controller"] == _replayed(_response(sample)[0], sample["thinking_budget"],
                                                 sample["thinking_open"])
    restored = [s for g in driver._active.values() for s in g.samples if s.result is None]
    finished = {tuple(t["response_ids"]) for g in saved["buffered"] for t in g["finished"]}
    # (prompt, response so far) of each partial sample: a short prefix alone may also start another prompt's response
    prefixes = [(s["prompt_ids"], _response(s)[0]) for s in partial]
    trajectories = []

    def everything_trained() -> bool:
        got = {tuple(t.response_ids) for t in trajectories}
        return finished <= got and all(any(t.prompt_ids == prompt and t.response_ids[:len(p)] == p
                                           for t in trajectories) for prompt, p in prefixes)

    try:
        driver.start()
        for step in range(2, 30):  # (new groups may come out in between)
            trajectories += driver.next_batch(step).trajectories
            if everything_trained():
                break
    finally:
        driver.close()
    assert everything_trained()
    for sample in restored:  # its controller went on counting from there: as one controller over the whole response
        assert sample.result is not None
        prompt = sample.item.prompt
        assert controller_counts(sample.controller) == _replayed(sample.result.response_ids, prompt.thinking_budget,
                                                                  prompt.thinking_open)
    resumed = LLMEngine(build_model(CFG, seed=2).eval(), TOK, num_slots=4, max_seq_len=128)  # an independent run
    for sample in (s for s in partial if s["pieces"]):
        ids, logprobs, versions = _response(sample)
        # what the resumed weights sample from prompt + response so far, for the tokens it had left, resuming the
        # seed's stream after them (as `partial.continuation_request` does)
        params = SamplingParams(max_new_tokens=SAMPLING.max_new_tokens - len(ids), temperature=1.0,
                                seed=sample["params"]["seed"], seed_offset=len(ids))
        rest = resumed.generate([Request(sample["prompt_ids"] + ids, params)])[0]
        # Continued over its prefix, not restarted. (Two samples of one group may share a short prefix, so the
        # continuation is found by its whole response: the other sample continues with another seed.)
        match = [t for t in trajectories
                 if t.prompt_ids == sample["prompt_ids"] and t.response_ids == ids + rest.response_ids]
        assert match, "a partial response was not continued over its prefix with the resumed weights"
        traj = match[0]
        assert traj.logprobs[:len(ids)] == logprobs and traj.token_versions[:len(ids)] == versions
        assert set(versions) <= {0, 1} and set(traj.token_versions[len(ids):]) <= {2}  # the rest: resumed weights


def test_groups_past_the_bound_at_restore_are_dropped_counted_and_sampled_again(mid_run: tuple) -> None:
    state, loop = mid_run
    saved = state[STATE_KEY]
    # (a response interrupted before its first token has an empty piece: no token, so nothing to be stale)
    with_tokens = [g for g in saved["in_flight"] if any(_response(s)[0] or s["result"] for s in g["samples"])]
    # resumed at version 4 with eta = 2: every saved token (version 0 or 1) is too old for the next batch
    loop.update_weights(_weights(4), version=4)
    driver = _driver(loop, start_version=4)
    driver.restore(split_state(state)[1])
    try:
        driver.start()
        batch = driver.next_batch(5)
    finally:
        driver.close()
    assert batch.stream_metrics["stream/dropped_stale"] == len(saved["buffered"]) + len(with_tokens)
    saved_ids = {g["problem"]["id"] for g in saved["buffered"] + saved["in_flight"]} | {p["id"] for p in saved["retry"]}
    assert {t.problem.id for t in batch.trajectories} <= saved_ids  # resampled (retry queue) before new prompts
    assert all(set(t.token_versions) == {4} for t in batch.trajectories)


def test_a_restored_response_keeps_its_controller_counts(mid_run: tuple) -> None:
    """(The tiny random model never opens thinking, so its counts stay trivial: set some, as a response that
    thought for 5 tokens before the checkpoint has.)"""
    state, loop = mid_run
    partial = [s for g in state[STATE_KEY]["in_flight"] for s in g["samples"] if s["result"] is None]
    for sample in partial:
        sample["controller"].update(phase="thinking", thinking_tokens=5, _run=5)
    driver = _driver(loop)
    driver.restore(split_state(state)[1])
    try:
        resumed = [sample for _, sample in driver._inflight.values()]
        assert len(resumed) == len(partial)
        for sample in resumed:
            counts = controller_counts(sample.controller)
            assert (counts["phase"], counts["thinking_tokens"], counts["_run"]) == ("thinking", 5, 5)
    finally:
        driver.close()


def test_a_cursor_without_rollout_state_restores_the_prompt_source_alone() -> None:
    assert split_state({"epoch": 1, "index": 7}) == ({"epoch": 1, "index": 7}, None)
    with pytest.raises(ValueError, match="streaming rollout state"):
        split_state({"epoch": 1, "index": 7, STATE_KEY: {"version": 2}})


def test_agent_groups_are_saved_as_prompts_and_sampled_again_on_resume() -> None:
    problems = generate_dataset("big_arithmetic", 8, 0, "train", {"digits": 2})
    agent = AgentSpec(environment="big_arithmetic", max_total_tokens=300, max_tokens_per_turn=24)
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=24, num_slots=8)
    engine = EngineLoop(LLMEngine(build_model(CFG, seed=0).eval(), TOK, num_slots=8, max_seq_len=800),
                        idle_wait_s=0.05).start()

    def driver(start_version: int, eta: int = 1) -> AgentStreamingDriver:
        spec = RolloutSpec(group_size=2, prompts_per_step=1, dynamic_sampling=False, mode="streaming",
                           max_staleness=eta)
        return AgentStreamingDriver(engine, TOK, PromptCursor(problems, 0), spec, sampling, REWARD, agent,
                                    seed=0, start_version=start_version, poll_s=0.05)

    try:
        first = driver(0).start()
        try:
            first.next_batch(1)
            state = json.loads(json.dumps(first.state()))
        finally:
            first.close()
        saved = state[STATE_KEY]
        assert not saved["buffered"] and not saved["in_flight"]  # episodes are not saved piece by piece...
        assert len(saved["retry"]) == state["index"] - 1 > 0  # ...but every prompt held is (one group trained)
        engine.update_weights(_weights(1), version=1)
        second = driver(1, eta=0)  # (eta 0: one group at a time, so the first batch is the first one started)
        second.restore(split_state(state)[1])
        assert second.state()[STATE_KEY]["retry"] == saved["retry"]
        try:
            batch = second.start().next_batch(2)
        finally:
            second.close()
    finally:
        engine.stop()
    assert {t.problem.id for t in batch.trajectories} == {saved["retry"][0]["id"]}  # before any new prompt
