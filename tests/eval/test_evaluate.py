"""Held-out metrics against hand-computed values: avg@k, pass@k (any correct), the unbiased pass@k estimator."""

from __future__ import annotations

import math

import pytest

from thinkrl.engine import LLMEngine
from thinkrl.eval.evaluate import evaluate, pass_at_k, summarise
from thinkrl.model import ModelConfig, build_model
from thinkrl.records import Trajectory
from thinkrl.rewards import score_response
from thinkrl.rewards.external import task_for
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer


@pytest.mark.parametrize(("n", "c", "k", "want"), [
    (4, 1, 1, 0.25),              # k = 1: c / n
    (4, 1, 2, 1 - 3 / 6),         # 1 - C(3,2)/C(4,2)
    (4, 2, 2, 1 - 1 / 6),         # 1 - C(2,2)/C(4,2)
    (4, 0, 4, 0.0),
    (4, 3, 2, 1.0),               # C(1,2) = 0: any 2 of 4 include a correct one
    (10, 3, 5, 1 - 21 / 252),     # 1 - C(7,5)/C(10,5)
])
def test_pass_at_k_hand_computed(n: int, c: int, k: int, want: float) -> None:
    assert math.isclose(pass_at_k(n, c, k), want, rel_tol=1e-12)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="k must be"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k(4, 5, 1)


def _judged(correct: list[bool], lengths: list[int]) -> list[Trajectory]:
    return [Trajectory([1], [7] * n, [0.0] * n, correct=c, reward_reason="correct" if c else "wrong value",
                       thinking_tokens=n - 1) for c, n in zip(correct, lengths, strict=True)]


def test_summary_of_two_problems_by_hand() -> None:
    # problem 0: 1 of 4 correct; problem 1: 2 of 4 correct
    trajs = _judged([True, False, False, False, True, True, False, False], [2, 4, 6, 8, 2, 2, 2, 2])
    result = summarise(trajs, num_problems=2, samples=4)
    assert result.accuracy == 3 / 8
    assert result.pass_at_k == 1.0
    assert result.pass_at == pytest.approx({1: (0.25 + 0.5) / 2, 2: ((1 - 3 / 6) + (1 - 1 / 6)) / 2, 4: 1.0})
    assert result.mean_response_tokens == 28 / 8 and result.mean_thinking_tokens == 20 / 8
    assert result.reasons == {"correct": 3, "wrong value": 5}


def test_evaluate_counts_what_the_verifier_says() -> None:
    tok = load_tokenizer("builtin")
    model = build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1), seed=0).eval()
    engine = LLMEngine(model, tok, num_slots=8, max_seq_len=256)
    problems = generate_dataset("arithmetic", 3, 0, "test", {"num_terms": 2, "max_number": 5})
    result = evaluate(engine, tok, problems, samples=2, max_new_tokens=8, seed=4)
    # Recount independently: regenerate with the same seeds and judge every response by hand.
    from thinkrl.eval.evaluate import eval_requests
    from thinkrl.rollout import sample

    trajs = sample(engine, tok, eval_requests(tok, problems, samples=2, temperature=1.0, max_new_tokens=8,
                                              thinking_budget=-1, seed=4))
    verdicts = [score_response(task_for(p.task), p, t.text, tok.think_tags, t.finish_reason == "stop").correct
                for p, t in zip([p for p in problems for _ in range(2)], trajs, strict=True)]
    assert result.num_problems == 3 and result.samples_per_problem == 2
    assert result.accuracy == sum(verdicts) / 6
    assert sum(result.reasons.values()) == 6
