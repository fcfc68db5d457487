"""Learning signal, end to end: a few RL steps on a reward a micro model can learn make the sampled accuracy rise,
and the same run with the advantage sign flipped makes it fall. Value-free (the ``dapo`` preset, group-normalised
``grpo`` advantages) and through the critic (the ``ppo`` preset, a value model and ``gae``).

The task is registered here: "name an even digit". A micro model SFT-ed on traces of which 70% answer an odd digit
(``trace_noise: 0.7``) starts 35-50% correct, so groups have mixed outcomes and accuracy has room both ways; the
reward depends on one token the same way for every prompt, so a handful of updates moves it.

The flipped estimators are registered in the real registry and chosen by name from the recipe; each returns the
real estimator's output with the advantages negated (value targets unchanged), so the flipped run differs from
the real one only in the sign of the policy's learning signal. A pipeline that dropped or mis-signed advantages
anywhere between the estimator and the optimizer step would make both runs move the same way (or not at all) and
fail here.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from thinkrl.registry import Registry
from thinkrl.rl import ADVANTAGE_ESTIMATORS, ALGORITHM_PRESETS, AdvantageInputs, AdvantageOutputs
from thinkrl.tasks import TASKS, Knob, Problem, Task, Trace, Verdict
from thinkrl.train.config import RLRecipe, SFTRecipe, validate_recipe

TASK = "learning_signal_even_digit"
FLIPPED = {"grpo": "learning_signal_flipped_grpo", "gae": "learning_signal_flipped_gae"}
MICRO = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "tie_word_embeddings": True}
DATA = {"task": TASK, "num_train": 32, "num_test": 0, "seed": 0}
STEPS = 8
PROMPTS = 8  # x group size 8: 64 samples a step; sampling noise of the trend: std about 0.05
WINDOW = 3  # trend = mean accuracy of the last WINDOW steps - mean of the first WINDOW
MARGIN = 0.1


class EvenDigitTask(Task):
    """Answer one even digit; the prompt's tag only makes problems distinct."""

    name = TASK
    difficulty_knobs = (Knob("max_tag", int, 999, 10, 1_000_000, "tags are drawn from 0..max_tag"),)

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        tag = rng.randint(0, difficulty["max_tag"])
        return f"Name an even digit ({tag}).", {"tag": tag}

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        return str(ground_truth["tag"])

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        if not re.fullmatch(r"\d", answer):
            return Verdict.wrong("unparseable", f"expected one digit, got {answer[:20]!r}")
        return Verdict.right(answer) if int(answer) % 2 == 0 else Verdict.wrong("wrong value", f"{answer} is odd")

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """An even digit; with probability ``noise`` an odd one (the mistake)."""
        return Trace("ok", str(rng.choice("13579" if rng.random() < noise else "02468")))


def flipped(name: str) -> Callable[[AdvantageInputs], AdvantageOutputs]:
    """The registered estimator ``name`` with its advantages negated; its value targets (returns) unchanged."""
    real = ADVANTAGE_ESTIMATORS.get(name)

    def estimator(inputs: AdvantageInputs) -> AdvantageOutputs:
        out = real(inputs)
        return AdvantageOutputs(advantages=-out.advantages, returns=out.returns)

    return estimator


def _remove(registry: Registry, name: str) -> None:
    # Other tests list every registered member (and check e.g. that each estimator is documented), so this
    # module's members must not outlive it.
    if name in registry:
        registry.unregister(name)


@pytest.fixture(scope="module")
def registered() -> Iterator[None]:
    """The task and the flipped estimators in the real registries, for this module only."""
    added: list[tuple[Registry, str]] = []
    if TASK not in TASKS:
        TASKS.register(TASK)(EvenDigitTask)
        added.append((TASKS, TASK))
    for base, name in FLIPPED.items():
        if name not in ADVANTAGE_ESTIMATORS:
            ADVANTAGE_ESTIMATORS.register(name)(flipped(base))
            added.append((ADVANTAGE_ESTIMATORS, name))
    yield
    for registry, name in added:
        _remove(registry, name)


@pytest.fixture(scope="module")
def sft_model(registered, tmp_path_factory) -> Path:
    """A micro model that learned the answer format and names an even digit 35-50% of the time."""
    from thinkrl.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft")
    recipe = validate_recipe({
        "name": "signal-sft", "model": {"init": MICRO, "device": "cpu"}, "data": DATA, "epochs": 30,
        "trace_noise": 0.7, "optim": {"lr": 1e-2, "warmup_steps": 3},
        "trainer": {"micro_batch_tokens": 384, "save_every": 0, "output_dir": str(out), "log_every": 10},
    }, SFTRecipe)
    return run_sft(recipe)


def _recipe(model: Path, out: Path, preset: str, estimator: str) -> RLRecipe:
    return validate_recipe({
        "name": "signal-rl", "model": {"path": str(model), "device": "cpu"}, "data": DATA,
        "sampling": {"max_new_tokens": 12, "num_slots": 32},
        "rollout": {"group_size": 8, "prompts_per_step": PROMPTS, "max_sampling_rounds": 1},
        "reward": {"max_response_len": 12, "overlong_cache_len": 4},
        "algorithm": {"preset": preset, "advantage_estimator": estimator},
        "optim": {"lr": 2e-3, "schedule": "constant"},
        "trainer": {"steps": STEPS, "micro_batch_tokens": 1024, "save_every": 0, "log_every": 1,
                    "output_dir": str(out), "eval_every": 0, "seed": 0},
    }, RLRecipe, presets=ALGORITHM_PRESETS)


def _accuracy_trend(recipe: RLRecipe) -> tuple[float, list[dict]]:
    """Run ``recipe``; (mean accuracy of the last WINDOW steps - of the first WINDOW, the step rows).

    Accuracy is over every response sampled at a step (the ``reward`` column of a dynamic-sampling run averages
    only the kept, mixed-outcome groups).
    """
    from thinkrl.train.rl_loop import run_rl

    run_rl(recipe)
    out = Path(recipe.trainer.output_dir or "")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    accuracy = [r["accuracy"] for r in rows]
    return sum(accuracy[-WINDOW:]) / WINDOW - sum(accuracy[:WINDOW]) / WINDOW, rows


def test_flipped_estimators_negate_the_advantages_only(registered):
    # Rewards of one group (+1, -1) and one response alone; critic values for GAE; lam 1, gamma 1.
    inputs = AdvantageInputs(rewards=torch.tensor([1.0, -1.0, 1.0]),
                             response_mask=torch.tensor([[True, True], [True, False], [True, True]]),
                             group_ids=torch.tensor([0, 0, 1]),
                             values=torch.tensor([[0.5, 0.25], [-0.5, 0.0], [0.0, 0.0]]))
    for base, name in FLIPPED.items():
        real, flip = ADVANTAGE_ESTIMATORS.get(base)(inputs), ADVANTAGE_ESTIMATORS.get(name)(inputs)
        torch.testing.assert_close(flip.advantages, -real.advantages)
        torch.testing.assert_close(flip.returns, real.returns)
    # By hand: GAE with lam = gamma = 1 is R - V(s_t); grpo is +-1/(std = sqrt 2) in the pair, 0 alone.
    gae = ADVANTAGE_ESTIMATORS.get(FLIPPED["gae"])(inputs).advantages
    torch.testing.assert_close(gae, -torch.tensor([[0.5, 0.75], [-0.5, 0.0], [1.0, 1.0]]))
    grpo = ADVANTAGE_ESTIMATORS.get(FLIPPED["grpo"])(inputs).advantages
    a = 1 / (2**0.5 + 1e-6)
    torch.testing.assert_close(grpo, -torch.tensor([[a, a], [-a, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize(("preset", "estimator"), [("dapo", "grpo"), ("ppo", "gae")])
def test_accuracy_rises_with_the_real_advantages_and_falls_with_flipped_ones(sft_model, tmp_path, preset,
                                                                          estimator):
    real = _recipe(sft_model, tmp_path / "real", preset, estimator)
    flip = _recipe(sft_model, tmp_path / "flipped", preset, FLIPPED[estimator])
    assert flip.algorithm.advantage_estimator == FLIPPED[estimator]
    uses_critic = ALGORITHM_PRESETS[preset]["critic.enabled"]
    assert real.critic.enabled == flip.critic.enabled == uses_critic
    rise, real_rows = _accuracy_trend(real)
    fall, flip_rows = _accuracy_trend(flip)
    curves = {"real": [r["accuracy"] for r in real_rows], "flipped": [r["accuracy"] for r in flip_rows]}
    # Both start from the same policy and sample the same first batch; its update differs only in sign.
    assert real_rows[0]["accuracy"] == flip_rows[0]["accuracy"], curves
    assert flip_rows[0]["loss"] == pytest.approx(-real_rows[0]["loss"], abs=1e-6)
    assert flip_rows[0]["grad_norm"] == pytest.approx(real_rows[0]["grad_norm"], rel=1e-4)
    assert 0.2 < real_rows[0]["accuracy"] < 0.8, curves  # the micro model starts with room both ways
    assert rise > MARGIN and fall < -MARGIN, (rise, fall, curves)
    for rows in (real_rows, flip_rows):
        trained = [r for r in rows if "loss" in r]
        assert len(trained) >= WINDOW, curves
        assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in trained)
        if uses_critic:
            assert all("value_loss" in r and "explained_variance" in r for r in trained)
