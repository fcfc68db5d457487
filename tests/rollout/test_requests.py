"""One way to sample: RL, evaluation and the budget sweep build identical requests for the same problem, and the
rollout fields of what comes back are set from the prompt, not from untyped metadata."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from thinkrl.engine import LLMEngine, Request
from thinkrl.eval.budget_sweep import sweep_budgets
from thinkrl.eval.evaluate import evaluate
from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.rollout import SamplingSpec, sample_groups
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)


class Recording:
    """The real engine, with every request it is given kept for inspection."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine, self.requests = engine, []

    def generate(self, requests: Sequence[Request]) -> list[Trajectory]:
        self.requests += list(requests)
        return self.engine.generate(list(requests))


def _signature(request: Request) -> tuple:
    """Everything about a request except its seed and id: prompt, sampling settings, budget control."""
    p, c = request.params, request.controller
    return (tuple(request.prompt_ids), p.max_new_tokens, p.temperature, p.top_p, p.top_k, p.stop_token_ids,
            p.stop_strings, type(c).__name__, c.thinking_budget, c.active, c.phase)


@pytest.mark.parametrize("budget", [-1, 0, 16])
def test_rl_eval_and_sweep_build_identical_requests(budget: int) -> None:
    tok = load_tokenizer("builtin")
    problem = generate_dataset("arithmetic", 1, 0, "test", {"num_terms": 2, "max_number": 5})
    client = Recording(LLMEngine(build_model(CFG, seed=0).eval(), tok, num_slots=4, max_seq_len=256))
    sampling = SamplingSpec(temperature=1.0, max_new_tokens=12, thinking_budgets=[budget])
    rl = sample_groups(client, tok, problem, 2, sampling, seed=3, first_group_id=0)
    n_rl = len(client.requests)
    evaluate(client, tok, problem, samples=2, temperature=1.0, max_new_tokens=12, thinking_budget=budget)
    n_eval = len(client.requests)
    sweep_budgets(client, tok, problem, [budget], enforce=False, samples=2, temperature=1.0, max_new_tokens=12)
    rl_req, eval_req, sweep_req = (client.requests[:n_rl], client.requests[n_rl:n_eval],
                                   client.requests[n_eval:])
    assert len(rl_req) == len(eval_req) == len(sweep_req) == 2
    want = _signature(rl_req[0])
    assert all(_signature(r) == want for r in rl_req + eval_req + sweep_req)
    assert len({r.params.seed for r in rl_req}) == 2  # seeded per sample
    # The rollout fields come from the prompt that was rendered, for every caller.
    for traj in rl:
        assert traj.problem == problem[0] and traj.thinking_budget == budget and traj.group_id == 0
        assert traj.metadata == {}  # (the thinking-token counts are recounted from the tokens in test_rl_trainer)


def test_enforced_sweep_requests_differ_only_in_enforcement() -> None:
    tok = load_tokenizer("builtin")
    problem = generate_dataset("arithmetic", 1, 0, "test", {"num_terms": 2, "max_number": 5})
    client = Recording(LLMEngine(build_model(CFG, seed=0).eval(), tok, num_slots=4, max_seq_len=256))
    sweep_budgets(client, tok, problem, [8], enforce=False, samples=1, max_new_tokens=12)
    sweep_budgets(client, tok, problem, [8], enforce=True, samples=1, max_new_tokens=12)
    free, forced = client.requests
    assert tuple(free.prompt_ids) == tuple(forced.prompt_ids) and free.params == forced.params
    assert not free.controller.active and forced.controller.active  # only the enforcing one can change tokens


def test_a_failed_request_is_never_scored() -> None:
    tok = load_tokenizer("builtin")
    problem = generate_dataset("arithmetic", 1, 0, "test", {"num_terms": 2, "max_number": 5})
    engine = LLMEngine(build_model(CFG, seed=0).eval(), tok, num_slots=4, max_seq_len=256)
    # Seeds beyond the generator's 64-bit range fail those requests in the engine (and only those).
    with pytest.raises(RuntimeError, match="failed in the engine"):
        evaluate(engine, tok, problem, samples=2, max_new_tokens=8, seed=2**64)
    assert evaluate(engine, tok, problem, samples=2, max_new_tokens=8).num_problems == 1


def test_rollout_metrics_by_hand() -> None:
    from thinkrl.rollout import RolloutBatch, rollout_metrics

    def traj(n: int, correct: bool, budget: int, thinking: int, kept: bool, group: int, reason: str = "") -> Trajectory:
        return Trajectory([1], [5] * n, [0.0] * n, group_id=group, thinking_budget=budget, thinking_tokens=thinking,
                          kept_budget=kept, correct=correct, reward=1.0 if correct else -1.0, reward_reason=reason)

    kept = [traj(4, True, 8, 3, True, 0), traj(6, False, 8, 9, False, 0)]
    dropped = [traj(10, True, -1, 7, True, 1), traj(2, True, -1, 1, True, 1, "truncated")]
    batch = RolloutBatch(trajectories=kept, sampled=kept + dropped, num_groups_sampled=2, num_groups_dropped=1,
                         num_rounds=1, num_prompts_skipped=3)
    row = rollout_metrics(batch)
    assert row["reward"] == 0.0  # (1 - 1) / 2 over the kept responses
    assert row["accuracy"] == 3 / 4 and row["response_length_mean"] == 22 / 4 and row["response_length_max"] == 10
    assert row["thinking_tokens_mean"] == 20 / 4
    assert row["budget_adherence"] == 1 / 2  # of the two responses with a finite budget, one kept it
    assert row["truncated_frac"] == 1 / 4 and row["groups_kept_trained"] == 1 and row["prompts_skipped"] == 3
    # a streaming batch taken wholly from groups buffered before the last step: nothing sampled since, so no
    # per-sample figure (not an accuracy of 0), but the trained groups' reward and counts
    buffered = rollout_metrics(RolloutBatch(trajectories=kept, sampled=[], num_groups_sampled=0, num_groups_dropped=0,
                                            num_rounds=1))
    assert buffered["reward"] == 0.0 and buffered["groups_kept_trained"] == 1
    assert not {"accuracy", "response_length_mean", "truncated_frac", "thinking_tokens_mean"} & set(buffered)
