"""Pass-rate filters, prompt sources and the difficulty curriculum; end to end through the real engine.

The end-to-end tests use a *bigram* CausalLM: zeroed layers, one-hot embeddings and an lm_head set so
the next-token distribution depends only on the current token. After the generation prompt it writes
``<seed:think></seed:think>`` then one digit drawn from a distribution the test chooses, then stops, so
the true pass rate of every arithmetic problem is known exactly (the probability of its answer digit).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from thinkrl.engine import LLMEngine
from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout import (
    Curriculum,
    CurriculumSpec,
    DataSpec,
    OnlineFilter,
    PrefilterSpec,
    PromptCursor,
    RewardSpec,
    RolloutSpec,
    SamplingSpec,
    build_prompt_source,
    collect_rollout_batch,
    estimate_pass_rates,
    filter_by_pass_rate,
    prefilter_problems,
    training_problems,
)
from thinkrl.tasks import TASKS, Problem, get_task
from thinkrl.tasks.arithmetic import ArithmeticTask
from thinkrl.tasks.base import Knob
from thinkrl.tasks.dataset import generate_dataset, split_of
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.config import RLRecipe, validate_recipe

TOKENIZER = load_tokenizer("builtin")
EASY = {"num_terms": 2, "max_number": 2}


def _problem(pid: str, task: str = "arithmetic", difficulty: dict | None = None) -> Problem:
    return Problem(task, pid, f"prompt {pid}", {"answer": 0}, difficulty or {})


# --- offline filter ------------------------------------------------------------------------------------------


def test_filter_by_pass_rate_hand_values() -> None:
    rates = {"a": 0.0, "b": 0.25, "c": 0.5, "d": 0.875, "e": 1.0}
    problems = [_problem(k) for k in rates]
    result = filter_by_pass_rate(problems, rates)
    assert [p.id for p in result.kept] == ["b", "c", "d"]
    assert (result.num_too_hard, result.num_too_easy, result.num_low_variance) == (1, 1, 0)
    assert result.mean_pass_rate == pytest.approx((0 + 0.25 + 0.5 + 0.875 + 1) / 5)
    assert [p.id for p in filter_by_pass_rate(problems, rates, low=0.25, high=0.875).kept] == ["c"]
    # variances: b 0.1875, c 0.25, d 0.109375
    flat = filter_by_pass_rate(problems, rates, min_variance=0.19)
    assert [p.id for p in flat.kept] == ["c"] and flat.num_low_variance == 2
    assert flat.metrics()["prefilter/low_variance"] == 2 and flat.metrics()["prefilter/kept"] == 1


def test_filter_by_pass_rate_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="'zz'"):
        filter_by_pass_rate([_problem("zz")], {})
    with pytest.raises(ValueError, match="1.5"):
        filter_by_pass_rate([_problem("a")], {"a": 1.5})
    with pytest.raises(ValueError, match="low=0.5, high=0.5"):
        filter_by_pass_rate([], {}, low=0.5, high=0.5)
    with pytest.raises(ValueError, match="min_variance"):
        filter_by_pass_rate([], {}, min_variance=0.3)


# --- cursor and online filter --------------------------------------------------------------------------------


def test_cursor_resumes_the_same_stream() -> None:
    problems = [_problem(f"{i:x}") for i in range(7)]
    cursor = PromptCursor(problems, seed=3)
    cursor.take(10)
    resumed = PromptCursor(problems, seed=3, **cursor.state())
    assert [p.id for p in cursor.take(9)] == [p.id for p in resumed.take(9)]
    assert cursor.metrics() == {"data/epoch": 2}


def test_online_filter_skips_recently_solved_and_unsolved_then_retries() -> None:
    problems = [_problem(x) for x in "abcd"]
    source = OnlineFilter(PromptCursor(problems, seed=0), window=2, retry_after=2)
    for _ in range(2):
        source.observe(problems[0], [True, True])    # a: always solved
        source.observe(problems[1], [False, False])  # b: never solved
        source.observe(problems[2], [True, False])   # c: mixed
    source.observe(problems[3], [True, True])        # d: solved once, window not full
    assert [source.skip_reason(p.id) for p in problems] == ["solved", "unsolved", None, None]
    epoch = [p.id for p in PromptCursor(problems, seed=0).take(4)]  # the cursor's order in epoch 0
    assert {p.id for p in source.take(2)} == {"c", "d"}
    last = max(epoch.index("c"), epoch.index("d"))
    assert source.skips == {x: 1 for x in epoch[:last] if x in "ab"}
    assert source.metrics()["data/prompts_skipped_total"] == sum(source.skips.values())
    counts = {x: 0 for x in "abcd"}
    for problem in source.take(10):  # a and b are retried once skipped twice, then skipped again
        counts[problem.id] += 1
    assert counts["c"] > counts["a"] >= 1 and counts["d"] > counts["b"] >= 1
    source.observe(problems[0], [True, False])  # a is no longer always solved
    assert source.skip_reason("a") is None and source.history["a"] == [1.0, 0.5]


def test_online_filter_state_round_trip_and_no_infinite_loop() -> None:
    problems = [_problem(x) for x in "abc"]
    source = OnlineFilter(PromptCursor(problems, seed=1), window=1, retry_after=100)
    source.observe(problems[0], [True, True])
    source.take(2)
    resumed = OnlineFilter(PromptCursor(problems, seed=1, **source.state()["cursor"]), window=1, retry_after=100,
                           state=source.state())
    assert [p.id for p in source.take(5)] == [p.id for p in resumed.take(5)]
    for p in problems:
        source.observe(p, [False])
    assert len(source.take(4)) == 4  # everything is skip-worthy: prompts are taken anyway, no hang


# --- curriculum ----------------------------------------------------------------------------------------------


def _feed(curriculum: Curriculum, rate_solved: bool, groups: int) -> None:
    for problem in curriculum.take(groups):
        curriculum.observe(problem, [rate_solved] * 4)


def test_curriculum_steps_round_robin_and_easier_undoes_the_last_step() -> None:
    rule = CurriculumSpec(knobs={"num_terms": 1, "max_number": 2}, window=3)
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": {"num_terms": 2, "max_number": 5}}, seed=0)
    level = curriculum.levels["arithmetic"]
    _feed(curriculum, True, 3)   # pass rate 1 > 0.7: harder, first knob
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (3, 5)
    _feed(curriculum, True, 2)   # window not full yet
    assert level.difficulty["max_number"] == 5 and len(level.outcomes) == 2
    _feed(curriculum, True, 1)   # harder again: the next knob
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (3, 7)
    _feed(curriculum, False, 3)  # pass rate 0 < 0.3: easier undoes the most recent step first
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (3, 5)
    _feed(curriculum, False, 3)
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (2, 5)
    metrics = curriculum.metrics()
    assert metrics["curriculum/arithmetic/num_terms"] == 2 and metrics["curriculum/arithmetic/changes"] == 4
    assert metrics["curriculum/arithmetic/window_pass_rate"] == 0.0
    for problem in curriculum.take(5):
        assert problem.difficulty == level.difficulty


def test_curriculum_in_band_stays_and_limits_clamp() -> None:
    rule = CurriculumSpec(knobs={"num_terms": 1, "max_number": -1}, window=2)
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": {"num_terms": 8, "max_number": 3}}, seed=0)
    level = curriculum.levels["arithmetic"]
    for problem in curriculum.take(2):
        curriculum.observe(problem, [True, False])  # 0.5: inside [0.3, 0.7]
    assert level.changes == 0 and level.last_pass_rate == 0.5
    _feed(curriculum, True, 2)  # num_terms is at its maximum 8: max_number steps down (-1 means smaller is harder)
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (8, 2)
    _feed(curriculum, True, 2)  # both at their limits (max_number's low is 2): nothing moves
    assert (level.difficulty["num_terms"], level.difficulty["max_number"]) == (8, 2) and level.changes == 1


def test_hardest_difficulty_sizes_the_longest_prompts() -> None:
    rule = CurriculumSpec(knobs={"num_terms": 1, "max_number": 10})
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": {"num_terms": 2, "max_number": 5}}, seed=0)
    hardest = curriculum.hardest_difficulty("arithmetic")
    assert (hardest["num_terms"], hardest["max_number"]) == (8, 1000)
    assert curriculum.levels["arithmetic"].difficulty["num_terms"] == 2  # only a query
    longest = max(len(p.prompt) for p in curriculum.hardest_problems(5))
    assert longest > max(len(p.prompt) for p in curriculum.take(20))


def test_curriculum_refuses_knobs_it_cannot_step_to_an_end() -> None:
    with pytest.raises(ValueError, match="knob 'allow_division' of task 'arithmetic' is not an int knob with a range"):
        Curriculum({"arithmetic": CurriculumSpec(knobs={"allow_division": 1})})

    @TASKS.register("arithmetic_open_knob")
    class OpenKnobArithmetic(ArithmeticTask):  # an int knob without an upper end: no hardest difficulty
        name = "arithmetic_open_knob"
        difficulty_knobs = (*ArithmeticTask.difficulty_knobs, Knob("padding", int, 0, low=0))

    try:
        with pytest.raises(ValueError, match="knob 'padding' .* is not an int knob with a range"):
            Curriculum({"arithmetic_open_knob": CurriculumSpec(knobs={"padding": 1})})
    finally:
        TASKS.unregister("arithmetic_open_knob")


def test_curriculum_ignores_groups_of_an_older_difficulty() -> None:
    curriculum = Curriculum({"arithmetic": CurriculumSpec(knobs={"max_number": 1}, window=2)},
                            {"arithmetic": EASY}, seed=0)
    stale = curriculum.take(4)
    for problem in stale[:2]:
        curriculum.observe(problem, [True])
    assert curriculum.levels["arithmetic"].difficulty["max_number"] == 3
    for problem in stale[2:]:  # generated at max_number 2: not counted for the new level
        curriculum.observe(problem, [True])
    assert curriculum.levels["arithmetic"].outcomes == []


def test_curriculum_makes_only_train_problems_outside_the_held_out_set_and_resumes() -> None:
    difficulty = EASY | {"max_number": 9}
    held_out = generate_dataset("arithmetic", 10, seed=5, split="test", difficulty=difficulty)
    train_like = generate_dataset("arithmetic", 10, seed=6, split="train", difficulty=difficulty)
    exclude = {p.id for p in held_out} | {p.id for p in train_like}
    raw = [get_task("arithmetic").generate(random.Random(i), **difficulty) for i in range(300)]
    assert sum(p.id in exclude or split_of(p.id) == "test" for p in raw) > 30  # the constraint bites
    rule = CurriculumSpec(knobs={"max_number": 1}, window=8)
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": difficulty}, seed=2, exclude_ids=exclude)
    made = curriculum.take(300)
    assert all(split_of(p.id) == "train" and p.id not in exclude for p in made)
    assert len({p.id for p in made}) > 50
    for problem in made[:5]:
        curriculum.observe(problem, [True, False])
    resumed = Curriculum({"arithmetic": rule}, seed=2, exclude_ids=exclude, state=curriculum.state())
    assert resumed.levels == curriculum.levels and len(resumed.levels["arithmetic"].outcomes) == 5
    assert [p.id for p in resumed.take(6)] == [p.id for p in curriculum.take(6)]


# --- config ----------------------------------------------------------------------------------------------------


def _recipe(data: dict) -> RLRecipe:
    return validate_recipe({"name": "r", "model": {"path": "m"}, "data": data}, RLRecipe)


def test_data_config_checks_curriculum_and_filters() -> None:
    ok = _recipe({"task": "arithmetic", "curriculum": {"knobs": {"max_number": 1}}, "difficulty": EASY})
    assert ok.data.curriculum == CurriculumSpec(knobs={"max_number": 1})
    with pytest.raises(ValueError, match="unknown difficulty 'size'"):
        _recipe({"task": "arithmetic", "curriculum": {"knobs": {"size": 1}}})
    with pytest.raises(ValueError, match="'allow_division' of task 'arithmetic' is bool"):
        _recipe({"task": "arithmetic", "curriculum": {"knobs": {"allow_division": 1}}})
    with pytest.raises(ValueError, match="set one or the other"):
        _recipe({"task": "arithmetic", "curriculum": {"knobs": {"max_number": 1}}, "online_filter": {}})
    with pytest.raises(ValueError, match="target_low"):
        _recipe({"task": "arithmetic", "curriculum": {"knobs": {"max_number": 1}, "target_low": 0.8}})
    with pytest.raises(ValueError, match="data.prefilter.k"):
        _recipe({"task": "arithmetic", "prefilter": {"k": 1}})
    with pytest.raises(ValueError, match="no generator"):
        _recipe({"task": "math", "curriculum": {"knobs": {"max_number": 1}}})
    assert _recipe({"task": "math", "train_file": "t.jsonl", "test_file": "s.jsonl"}).data.task == "math"
    with pytest.raises(ValueError, match="registered: .*math"):
        _recipe({"task": "chess"})


def test_build_prompt_source_picks_and_restores_the_source() -> None:
    problems = [_problem(x) for x in "abc"]
    plain = build_prompt_source(DataSpec(task="arithmetic"), problems, state={"epoch": 1, "index": 2})
    assert isinstance(plain, PromptCursor) and plain.state() == {"epoch": 1, "index": 2}
    online = build_prompt_source(DataSpec(task="arithmetic", online_filter={"window": 1}), problems)
    online.observe(problems[0], [True])
    again = build_prompt_source(DataSpec(task="arithmetic", online_filter={"window": 1}), problems,
                                state=online.state())
    assert isinstance(again, OnlineFilter) and again.history == {"a": [1.0]}
    curriculum = build_prompt_source(DataSpec(task="arithmetic", difficulty=EASY,
                                              curriculum={"knobs": {"max_number": 1}}), [], exclude_ids={"x"})
    assert isinstance(curriculum, Curriculum) and curriculum.exclude_ids == {"x"}
    assert curriculum.levels["arithmetic"].difficulty["max_number"] == 2



def test_a_curriculum_needs_no_fixed_training_set_of_num_train_problems() -> None:
    # Two terms in 1..3 make at most 3 x 3 x 3 (+, -, *) distinct problems: a fixed set of 1000 cannot be drawn at
    # this level, but a curriculum generates its own prompts, so the run's training problems are its first ones.
    narrow = {"task": "arithmetic", "num_train": 1000, "difficulty": {"num_terms": 2, "max_number": 3}}
    with pytest.raises(ValueError, match="distinct train problems"):
        training_problems(DataSpec(**narrow))
    spec = DataSpec(**narrow, curriculum={"knobs": {"max_number": 1}})
    made = training_problems(spec, exclude_ids={"x"})
    assert len(made) == 200 and len({p.id for p in made}) <= 27
    assert [p.id for p in made] == [p.id for p in build_prompt_source(spec, [], exclude_ids={"x"}).take(200)]
    assert len(training_problems(DataSpec(task="arithmetic", num_train=30))) == 30  # no curriculum: the fixed set

# --- end to end with the engine ----------------------------------------------------------------------------------


def bigram_engine(digit_probs: dict[str, float]) -> LLMEngine:
    """An engine over a bigram model that answers ``<seed:think></seed:think>{digit}<seed:eos>``.

    Four orthonormal embedding directions: one per token with a scripted successor (newline, think open,
    think close) and one shared by every other token (whose successor is the stop token).
    """
    v = TOKENIZER.vocab_size
    config = ModelConfig.from_hf_dict({
        "architectures": ["SeedOssForCausalLM"], "vocab_size": v, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "tie_word_embeddings": False,
        "bos_token_id": TOKENIZER.bos_token_id, "eos_token_id": TOKENIZER.eos_token_id,
        "pad_token_id": TOKENIZER.pad_token_id})
    model = build_model(config)
    newline, think, unthink = (TOKENIZER.encode(s)[0] for s in ("\n", "<seed:think>", "</seed:think>"))
    rows = {newline: {think: 1.0}, think: {unthink: 1.0},
            unthink: {TOKENIZER.encode(d)[0]: p for d, p in digit_probs.items()}}
    basis = torch.eye(8)[:4]  # [4, C]: direction 0 for "any other token"
    logits = torch.full((4, v), -40.0)  # [4, V]
    logits[0, TOKENIZER.eos_token_id] = 0.0
    for k, following in enumerate(rows.values(), start=1):
        for token, prob in following.items():
            logits[k, token] = math.log(prob)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0) if name.endswith("norm.weight") else param.zero_()  # layers add nothing
        model.model.embed_tokens.weight.copy_(basis[0].expand(v, 8))
        for k, token in enumerate(rows, start=1):
            model.model.embed_tokens.weight[token] = basis[k]
        scale = float(model.model.norm(basis[0])[0])  # hidden = scale * basis[k]
        model.lm_head.weight.copy_(logits.T @ basis / scale)  # [V, C]
    return LLMEngine(model, TOKENIZER, num_slots=64, max_seq_len=64, seed=0)


SAMPLING = SamplingSpec(max_new_tokens=8)


def _answers(problems: list[Problem]) -> list[int]:
    return [p.ground_truth["answer"] for p in problems]


def test_estimate_pass_rates_and_prefilter_with_a_known_policy() -> None:
    problems = generate_dataset("arithmetic", 12, seed=0, split="train", difficulty=EASY | {"max_number": 3})
    assert {0, 2} <= set(_answers(problems)) and set(_answers(problems)) - {0, 2}
    engine = bigram_engine({"2": 1.0})
    rates = estimate_pass_rates(engine, TOKENIZER, problems, 3, SAMPLING, seed=0)
    assert rates == {p.id: float(p.ground_truth["answer"] == 2) for p in problems}
    engine = bigram_engine({"0": 0.5, "2": 0.5})
    rates = estimate_pass_rates(engine, TOKENIZER, problems, 8, SAMPLING, seed=1)
    for p in problems:
        if p.ground_truth["answer"] in (0, 2):
            assert 0.0 < rates[p.id] < 1.0 and abs(rates[p.id] - 0.5) <= 0.4
        else:
            assert rates[p.id] == 0.0
    result = prefilter_problems(engine, TOKENIZER, problems, PrefilterSpec(k=8), SAMPLING, seed=1)
    assert sorted(_answers(result.kept)) == sorted(a for a in _answers(problems) if a in (0, 2))
    with pytest.raises(ValueError, match="kept none"):
        prefilter_problems(bigram_engine({"9": 1.0}), TOKENIZER, problems, PrefilterSpec(k=2), SAMPLING)


ROLLOUT = RolloutSpec(group_size=4, prompts_per_step=4, max_sampling_rounds=2)
REWARD = RewardSpec(max_response_len=8, overlong_cache_len=2)


def test_rollout_feeds_the_online_filter_and_logs_skips() -> None:
    problems = generate_dataset("arithmetic", 8, seed=0, split="train", difficulty=EASY | {"max_number": 3})
    source = OnlineFilter(PromptCursor(problems, seed=0), window=1, retry_after=50)
    engine = bigram_engine({"2": 1.0})  # answer-2 problems always solved, the rest never: no group has variance
    first = collect_rollout_batch(engine, TOKENIZER, source, ROLLOUT, SAMPLING, REWARD, seed=0)
    assert first.num_groups_sampled == 8 and first.num_groups_dropped == 8 and not first.trajectories
    assert first.num_prompts_skipped == 0 and len(source.history) == 8  # every prompt seen once in the epoch
    assert len(first.sampled) == 8 * 4  # every response is kept in `sampled`, dropped groups too
    assert all(t.correct == (t.problem.ground_truth["answer"] == 2) for t in first.sampled)
    second = collect_rollout_batch(engine, TOKENIZER, source, ROLLOUT, SAMPLING, REWARD, seed=1)
    assert second.num_prompts_skipped > 0
    assert second.data_metrics["data/skipped_solved_total"] + second.data_metrics["data/skipped_unsolved_total"] \
        == second.num_prompts_skipped
    solved = {p.id for p in problems if p.ground_truth["answer"] == 2}
    assert {k for k, h in source.history.items() if h == [1.0]} == solved


def test_rollout_drives_the_curriculum_harder_until_the_policy_fails() -> None:
    rule = CurriculumSpec(knobs={"max_number": 2}, target_low=0.02, target_high=0.12, window=4)
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": EASY}, seed=0)
    engine = bigram_engine({"2": 1.0})  # always answers 2: frequent when numbers are small, rare when large
    rates = []
    for step in range(6):
        batch = collect_rollout_batch(engine, TOKENIZER, curriculum,
                                      ROLLOUT.model_copy(update={"max_sampling_rounds": 1}), SAMPLING, REWARD,
                                      seed=step)
        rates.append(batch.data_metrics.get("curriculum/arithmetic/window_pass_rate"))
    metrics = batch.data_metrics
    assert metrics["curriculum/arithmetic/max_number"] > 2 and metrics["curriculum/arithmetic/changes"] >= 1
    assert rates[0] is not None and rates[0] > rule.target_high  # small numbers: "2" is often right
    level = curriculum.levels["arithmetic"]
    problems = curriculum.take(50)
    share = sum(p.ground_truth["answer"] == 2 for p in problems) / 50
    assert share < rates[0] and all(p.difficulty == level.difficulty for p in problems)


def test_hardest_problems_survive_a_generator_that_gives_up_on_some_draws():
    # At 8 terms up to 1000 with results capped at 1000, arithmetic's generator gives up on some draws (raising
    # ValueError); sizing the engine must draw again, not crash (it did, on this seed).
    rule = CurriculumSpec(knobs={"max_number": 2, "num_terms": 1}, target_low=0.25, target_high=0.6, window=32)
    curriculum = Curriculum({"arithmetic": rule}, {"arithmetic": {"num_terms": 3, "max_number": 6}})
    problems = curriculum.hardest_problems(20, seed=0)
    assert len(problems) == 20
    assert all(p.difficulty["num_terms"] == 8 and p.difficulty["max_number"] == 1000 for p in problems)
