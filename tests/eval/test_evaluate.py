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


@pytest.mark.parametrize("budgets", [None, "0,-1"])
def test_local_eval_cli_samples_with_the_given_seed_and_top_p(boxed_model, monkeypatch, capsys, budgets) -> None:
    """`thinkrl eval --model DIR` without --out (plain and --budgets) passes --sample-seed and --top-p on; both
    used to be dropped, so every seed gave the same samples."""
    import thinkrl.eval.budget_sweep as sweep_module
    import thinkrl.eval.evaluate as evaluate_module
    from thinkrl.cli import main

    seen = []
    for module, name in ((evaluate_module, "eval_requests"), (sweep_module, "eval_requests")):
        real = getattr(module, name)

        def spy(*args, _real=real, **kwargs):
            items = _real(*args, **kwargs)
            seen.append((kwargs["seed"], {(i.params.top_p, i.params.seed) for i in items}))
            return items

        monkeypatch.setattr(module, name, spy)
    model_dir, bench = boxed_model
    extra = ["--budgets", budgets] if budgets else []
    assert main(["eval", "--model", str(model_dir), "--data", str(bench), "--samples", "2", "--max-new-tokens", "8",
                 "--sample-seed", "7", "--top-p", "0.5", "--device", "cpu", *extra]) == 0
    capsys.readouterr()
    assert seen and all(seed == 7 for seed, _ in seen)
    seeds = {s for _, pairs in seen for _, s in pairs}
    assert all(top_p == 0.5 for _, pairs in seen for top_p, _ in pairs)
    assert min(seeds) == 7 * 1_000_003  # problem 0, sample 0
