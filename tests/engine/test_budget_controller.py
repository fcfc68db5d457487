"""Thinking-budget controller: exact forced text on scripted token streams, then properties on the real engine.

The scripted tests feed chosen "sampled" tokens through the `SequenceController` protocol
exactly as `LLMEngine._append` does (`_simulate`), so the expected text can be written by
hand. The engine tests run a tiny random model (weights optionally biased towards a tag)
and recount everything independently from ``response_ids`` / ``response_mask``.
"""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import (
    LLMEngine,
    Request,
    SamplingParams,
    ThinkingBudgetController,
    budget_vocab,
    make_budget_controller,
)
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import BUDGET_EXHAUSTED_TEXT, ThinkTags, load_tokenizer, parse_completion

CFG = ModelConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)
SEED_TOK = load_tokenizer("builtin")
THINK_TOK = load_tokenizer("builtin", chat_template="think")
X, Y = SEED_TOK.encode("x") + SEED_TOK.encode("y")  # single-token filler words
EOS = SEED_TOK.eos_token_id
EXHAUSTED = f"\n<seed:cot_budget_reflect>{BUDGET_EXHAUSTED_TEXT}</seed:cot_budget_reflect>\n"


def _reflection(used: int, remaining: int) -> str:
    """The forced reflection, spelled out by hand (not through reflection_text)."""
    return (f"\n<seed:cot_budget_reflect>I have used {used} tokens, and there are {remaining} tokens remaining "
            "for use.</seed:cot_budget_reflect>\n")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and do not stall when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _simulate(controller, samples, stop_ids=(EOS,)):
    """Feed ``samples`` as the model's sampled tokens, as LLMEngine does; returns (ids, mask)."""
    ids: list[int] = []
    mask: list[bool] = []
    for token in samples:
        assert token not in controller.banned_tokens(ids), f"scripted token {token} is banned"
        replacement = controller.replacement_tokens(ids, token)
        if replacement:
            forced = replacement
        else:
            ids.append(token)
            mask.append(True)
            if token in stop_ids:
                break
            forced = controller.forced_tokens(ids)
        ids += forced
        mask += [False] * len(forced)
        if any(t in stop_ids for t in forced):
            break
    return ids, mask


# ---- exact text on scripted streams --------------------------------------------------------
@pytest.mark.parametrize("tok", [SEED_TOK, THINK_TOK], ids=["seed", "think"])
def test_budget_600_reflects_at_256_and_512_then_forces_the_end(tok):
    tags = tok.think_tags
    c = make_budget_controller(tok, 600, reflect=True, thinking_open=True)
    ids, mask = _simulate(c, [X] * 700)
    want = ("x" * 256 + _reflection(256, 344) + "x" * 256 + _reflection(512, 88) + "x" * 88 + EXHAUSTED
            + tags.close + "x" * 100)
    assert tok.decode(ids) == want
    assert sum(mask) == 700 and c.thinking_tokens == 600 and c.answer_tokens == 100
    assert c.forced_end and c.thinking_finished and c.num_reflections == 2
    parsed = parse_completion(tok.decode(ids), tags, thinking_open=True)
    assert parsed.budget_reflections == [
        "I have used 256 tokens, and there are 344 tokens remaining for use.",
        "I have used 512 tokens, and there are 88 tokens remaining for use.", BUDGET_EXHAUSTED_TEXT]
    assert parsed.content == "x" * 100


def test_budget_64_has_no_reflection_before_the_budget_and_counts_from_the_model_open_tag():
    """Interval 128 > budget 64: no reflection; the model opens thinking itself after 3 preamble tokens."""
    c = make_budget_controller(SEED_TOK, 64, reflect=True, exhausted_sentence=False)
    assert c.interval == 128 and c.phase == "before"
    ids, _ = _simulate(c, [Y] * 3 + [SEED_TOK.token_to_id("<seed:think>")] + [X] * 80)
    assert SEED_TOK.decode(ids) == "yyy<seed:think>" + "x" * 64 + "\n</seed:think>" + "x" * 16
    assert c.thinking_tokens == 64 and c.num_reflections == 0 and c.forced_end


def test_reflection_count_matches_the_seed_oss_table():
    """Reflections at every multiple of the interval strictly below the budget."""
    for budget, interval in [(512, 128), (1024, 256), (4096, 512), (5000, 1024)]:
        c = make_budget_controller(SEED_TOK, budget, enforce=False, reflect=True, thinking_open=True)
        _simulate(c, [X] * (budget + 50))
        assert c.interval == interval and c.num_reflections == (budget - 1) // interval, budget
        assert c.thinking_tokens == budget + 50 and not c.forced_end


def test_custom_reflect_interval_and_model_closing_early():
    c = make_budget_controller(SEED_TOK, 10, reflect=True, reflect_interval=4, thinking_open=True)
    close = SEED_TOK.token_to_id("</seed:think>")
    ids, mask = _simulate(c, [X] * 9 + [close] + [Y] * 3)
    assert SEED_TOK.decode(ids) == "xxxx" + _reflection(4, 6) + "xxxx" + _reflection(8, 2) + "x</seed:think>yyy"
    assert c.thinking_tokens == 9 and not c.forced_end and c.thinking_finished and c.answer_tokens == 3


def test_multi_token_tags_are_matched_as_sequences():
    tags = ThinkTags(open="<reason>", close="</reason>", reflect_open="<seed:cot_budget_reflect>",
                     reflect_close="</seed:cot_budget_reflect>")
    vocab = budget_vocab(SEED_TOK, tags)
    assert len(vocab.open_ids) > 1 and len(vocab.close_ids) > 1
    closed = make_budget_controller(SEED_TOK, 50, tags=tags)
    _simulate(closed, [Y] + list(vocab.open_ids) + [X] * 7 + list(vocab.close_ids) + [Y] * 2)
    assert closed.thinking_tokens == 7 and closed.thinking_finished and closed.answer_tokens == 2
    forced = make_budget_controller(SEED_TOK, 5, tags=tags, exhausted_sentence=False)
    ids, _ = _simulate(forced, list(vocab.open_ids) + [X] * 8)
    assert SEED_TOK.decode(ids) == "<reason>xxxxx\n</reason>xxx" and forced.thinking_tokens == 5


def test_budget_zero_answers_directly_and_bans_the_open_tag():
    open_id = SEED_TOK.token_to_id("<seed:think>")
    c = make_budget_controller(SEED_TOK, 0, max_answer_tokens=4)
    assert c.thinking_finished and c.banned_tokens([]) == [open_id]
    ids, mask = _simulate(c, [X] * 10)
    assert ids == [X] * 4 + [EOS] and mask == [True] * 4 + [False]
    assert c.thinking_tokens == 0 and not c.forced_end


def test_budget_zero_with_an_open_prompt_replaces_the_first_token_by_the_end():
    c = make_budget_controller(SEED_TOK, 0, thinking_open=True)
    ids, mask = _simulate(c, [X] * 3)
    assert SEED_TOK.decode(ids) == EXHAUSTED + "</seed:think>xx"
    assert mask == [False] * (len(ids) - 2) + [True, True] and c.thinking_tokens == 0 and c.forced_end


def test_unenforced_counting_includes_thinking_reopened_in_the_answer():
    open_id, close = SEED_TOK.token_to_id("<seed:think>"), SEED_TOK.token_to_id("</seed:think>")
    # Budget 0 (the prompt closed thinking), not enforced: a model that thinks anyway is counted.
    c = ThinkingBudgetController(budget_vocab(SEED_TOK), 0, enforce=False)
    _simulate(c, [X, open_id, X, Y, X, close, Y, EOS])
    assert c.thinking_tokens == 3 and c.answer_tokens == 2 and c.phase == "answer"
    # Two blocks under budget 8: 2 + 3 thinking tokens; left open at the end -> still thinking.
    c = ThinkingBudgetController(budget_vocab(SEED_TOK), 8, enforce=False)
    _simulate(c, [open_id, X, X, close, Y, open_id, X, X, X])
    assert c.thinking_tokens == 5 and c.phase == "thinking"


def test_a_reflection_the_model_writes_itself_counts_like_any_sampled_token():
    open_id = SEED_TOK.token_to_id("<seed:think>")
    ro, rc = SEED_TOK.token_to_id("<seed:cot_budget_reflect>"), SEED_TOK.token_to_id("</seed:cot_budget_reflect>")
    c = ThinkingBudgetController(budget_vocab(SEED_TOK), 8, enforce=True, exhausted_sentence=False)
    ids, mask = _simulate(c, [open_id, X, X, ro, X, Y, X, rc, Y, Y, Y])
    # 8 sampled tokens after the open tag (the reflection's tags and words included), then the forced end.
    assert SEED_TOK.decode(ids).endswith("</seed:cot_budget_reflect>y\n</seed:think>yy")
    assert c.thinking_tokens == 8 and c.forced_end


def test_enforced_thinking_turns_a_stop_token_into_the_end_of_thinking():
    open_id = SEED_TOK.token_to_id("<seed:think>")
    c = make_budget_controller(SEED_TOK, 16)
    ids, mask = _simulate(c, [open_id, X, X, EOS, Y, Y, EOS])
    assert SEED_TOK.decode(ids) == "<seed:think>xx\n</seed:think>yy<seed:eos>"
    assert c.thinking_tokens == 2 and c.phase == "answer" and not c.forced_end and c.closed_at_stop
    # Not enforced: the stop token ends the response inside thinking (adherence counts it as not closed).
    c = ThinkingBudgetController(budget_vocab(SEED_TOK), 16, enforce=False)
    ids, _ = _simulate(c, [open_id, X, X, EOS, Y])
    assert ids == [open_id, X, X, EOS] and c.phase == "thinking"


def test_kept_budget_needs_thinking_closed_within_the_budget():
    open_id, close = SEED_TOK.token_to_id("<seed:think>"), SEED_TOK.token_to_id("</seed:think>")
    vocab = budget_vocab(SEED_TOK)

    def kept(budget: int, samples: list[int]) -> bool:
        c = ThinkingBudgetController(vocab, budget, enforce=False)
        _simulate(c, samples)
        return c.kept_budget

    assert kept(4, [open_id, X, X, X, X, close, Y])  # 4 of 4, closed
    assert not kept(4, [open_id, X, X, X, X, X, close, Y])  # 5 of 4
    assert not kept(4, [open_id, X, X])  # never closed
    assert kept(4, [Y, Y, EOS])  # never opened: 0 tokens
    assert kept(-1, [open_id, *[X] * 50, close])  # unlimited, closed
    assert not kept(-1, [open_id, X, X])  # unlimited, but left open
    assert not kept(0, [Y, open_id, X, close])  # budget 0, thinking reopened in the answer


def test_unlimited_budget_controls_nothing_unless_asked():
    assert make_budget_controller(SEED_TOK, -1) is None
    assert make_budget_controller(SEED_TOK, -1, reflect=True) is None
    assert make_budget_controller(SEED_TOK, 64, enforce=False, reflect=True) is None  # interval 128 > 64
    assert make_budget_controller(SEED_TOK, 600, enforce=False) is None
    c = make_budget_controller(SEED_TOK, -1, thinking_open=True, max_answer_tokens=2)
    close = SEED_TOK.token_to_id("</seed:think>")
    ids, _ = _simulate(c, [X] * 3000 + [close] + [Y] * 5)
    assert ids == [X] * 3000 + [close, Y, Y, EOS] and c.thinking_tokens == 3000 and not c.forced_end


@pytest.mark.parametrize("tok", [SEED_TOK, THINK_TOK], ids=["seed", "think"])
def test_min_budget_replaces_close_and_stop_by_wait(tok):
    close = tok.token_to_id(tok.think_tags.close)
    c = make_budget_controller(tok, 40, min_thinking_tokens=8, thinking_open=True)
    ids, mask = _simulate(c, [X] * 3 + [close] + [X] * 2 + [EOS] + [X] * 3 + [close, Y])
    assert tok.decode(ids) == f"xxxWaitxxWaitxxx{tok.think_tags.close}y"
    assert c.num_waits == 2 and c.thinking_tokens == 8 and not c.forced_end and c.answer_tokens == 1
    wait = len(tok.encode("Wait"))
    assert mask == [True] * 3 + [False] * wait + [True] * 2 + [False] * wait + [True] * 5


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="thinking_budget"):
        make_budget_controller(SEED_TOK, -2)
    with pytest.raises(TypeError, match="thinking_budget"):
        make_budget_controller(SEED_TOK, 1.5)
    with pytest.raises(ValueError, match=r"min_thinking_tokens \(65\) must be <= thinking_budget \(64\)"):
        make_budget_controller(SEED_TOK, 64, min_thinking_tokens=65)
    with pytest.raises(ValueError, match="max_answer_tokens"):
        make_budget_controller(SEED_TOK, 64, max_answer_tokens=-1)
    with pytest.raises(TypeError, match="reflect must be a bool"):
        make_budget_controller(SEED_TOK, 64, reflect="yes")
    with pytest.raises(ValueError, match="reflect_interval"):
        make_budget_controller(SEED_TOK, 64, reflect=True, reflect_interval=0)
    with pytest.raises(TypeError, match="tags must be a ThinkTags"):
        make_budget_controller(_NoTags(), 64)
    assert isinstance(make_budget_controller(SEED_TOK, 64, min_thinking_tokens=65, enforce=False),
                      ThinkingBudgetController)


class _NoTags:
    def encode(self, text: str) -> list[int]:
        return [0]


# ---- the real engine -------------------------------------------------------------------------
def _model(bias_token: int | None = None, scale: float = 200.0):
    """The tiny random model; ``bias_token``'s output row scaled so the model often wants to emit it."""
    model = build_model(CFG, seed=0).eval()
    if bias_token is not None:
        with torch.no_grad():
            model.lm_head.weight[bias_token] *= scale
    return model


def _prompt(tok, budget: int, open_thinking: bool) -> list[int]:
    text = tok.apply_chat_template([{"role": "user", "content": "Use 3 7 8 2 to make 24."}], thinking_budget=budget)
    return tok.encode(text + (tok.think_tags.open if open_thinking else ""))


def _thinking_region(ids: list[int], open_id: int | None, close_id: int) -> tuple[int, int]:
    """(start, end) of the thinking block in ``ids`` (open_id None: the prompt opened it); end = close index."""
    start = 0 if open_id is None else ids.index(open_id) + 1
    return start, ids.index(close_id, start)


@pytest.mark.parametrize("tok", [SEED_TOK, THINK_TOK], ids=["seed", "think"])
def test_enforcement_holds_for_every_request_of_a_random_model(tok):
    budgets = [8, 16, 24, 40, 64, 64, 100, 128]
    model, tags = _model(), tok.think_tags
    close_id = tok.token_to_id(tags.close)
    engine = LLMEngine(model, tok, num_slots=4, max_seq_len=512)
    ctrls = [make_budget_controller(tok, b, thinking_open=True) for b in budgets]
    reqs = [Request(_prompt(tok, b, True), SamplingParams(max_new_tokens=b + 40, seed=i, stop_token_ids=()),
                    controller=c) for i, (b, c) in enumerate(zip(budgets, ctrls, strict=True))]
    outs = engine.generate(reqs)
    end_ids = budget_vocab(tok).exhausted_end_ids
    for budget, c, out in zip(budgets, ctrls, outs, strict=True):
        _, end = _thinking_region(out.response_ids, None, close_id)  # the block is closed
        sampled = sum(out.response_mask[:end])
        assert sampled == c.thinking_tokens <= budget
        if c.forced_end:
            assert sampled == budget
            assert out.response_ids[end + 1 - len(end_ids): end + 1] == list(end_ids)
            assert not any(out.response_mask[end + 1 - len(end_ids): end + 1])
        assert parse_completion(out.text, tags, thinking_open=True).thinking_finished
    # The random model rarely closes by itself: the budget or a stop token it samples (replaced by the end) does.
    assert sum(c.forced_end or c.closed_at_stop for c in ctrls) >= 6


def test_model_opening_thinking_itself_and_budget_zero_never_reopens():
    """A model biased towards <seed:think>: it opens thinking itself (counted from there); in the answer, and
    with budget 0 from the start, the open tag is banned."""
    open_id, close_id = SEED_TOK.token_to_id("<seed:think>"), SEED_TOK.token_to_id("</seed:think>")
    engine = LLMEngine(_model(open_id), SEED_TOK, num_slots=4, max_seq_len=512)
    free = engine.generate([Request(_prompt(SEED_TOK, 0, False), SamplingParams(max_new_tokens=40, seed=1,
                                                                               stop_token_ids=()))])[0]
    assert free.response_ids.count(open_id) > 5  # the bias works
    ctrls = [make_budget_controller(SEED_TOK, 32), make_budget_controller(SEED_TOK, 0)]
    outs = engine.generate([Request(_prompt(SEED_TOK, b, False), SamplingParams(max_new_tokens=80, seed=1,
                                                                              stop_token_ids=()), controller=c)
                            for b, c in zip([32, 0], ctrls, strict=True)])
    start, end = _thinking_region(outs[0].response_ids, open_id, close_id)
    assert sum(outs[0].response_mask[start:end]) == ctrls[0].thinking_tokens == 32 and ctrls[0].forced_end
    assert open_id not in outs[0].response_ids[end:]
    assert open_id not in outs[1].response_ids and ctrls[1].thinking_tokens == 0 and not ctrls[1].forced_end
    assert len(outs[1].response_ids) == 80


def test_budget_600_reflections_on_the_engine():
    """Floor = budget, so the random model cannot close early (its close attempts become "Wait")."""
    model = _model()
    engine = LLMEngine(model, SEED_TOK, num_slots=4, max_seq_len=1024)
    ctrls = [make_budget_controller(SEED_TOK, 600, reflect=True, min_thinking_tokens=600, thinking_open=True)
             for _ in range(4)]
    outs = engine.generate([Request(_prompt(SEED_TOK, 600, True), SamplingParams(max_new_tokens=700, seed=i,
                                                                                 stop_token_ids=()), controller=c)
                            for i, c in enumerate(ctrls)])
    close_id = SEED_TOK.token_to_id("</seed:think>")
    for c, out in zip(ctrls, outs, strict=True):
        ids, mask = out.response_ids, out.response_mask
        _, end = _thinking_region(ids, None, close_id)
        reflections = []  # (sampled thinking tokens before it, text) for each forced run inside thinking
        i = 0
        while i < end:
            if mask[i]:
                i += 1
                continue
            j = i
            while j < len(ids) and not mask[j]:
                j += 1
            text = SEED_TOK.decode(ids[i:j]).replace("Wait", "")  # a close attempt may follow a reflection
            if text:
                reflections.append((sum(mask[:i]), text))
            i = j
        assert reflections == [(256, _reflection(256, 344)), (512, _reflection(512, 88)),
                               (600, EXHAUSTED + "</seed:think>")]
        assert c.forced_end and c.thinking_tokens == 600 and c.num_reflections == 2


def test_min_budget_on_a_model_that_wants_to_close():
    close_id = SEED_TOK.token_to_id("</seed:think>")
    engine = LLMEngine(_model(close_id), SEED_TOK, num_slots=4, max_seq_len=512)
    params = [SamplingParams(max_new_tokens=120, seed=i, stop_token_ids=()) for i in range(4)]
    free = engine.generate([Request(_prompt(SEED_TOK, -1, True), p) for p in params])
    assert all(out.response_ids.index(close_id) < 10 for out in free)  # without a floor it closes at once
    ctrls = [make_budget_controller(SEED_TOK, -1, min_thinking_tokens=30, thinking_open=True) for _ in params]
    outs = engine.generate([Request(_prompt(SEED_TOK, -1, True), p, controller=c)
                            for p, c in zip(params, ctrls, strict=True)])
    wait = SEED_TOK.encode("Wait")
    for c, out in zip(ctrls, outs, strict=True):
        _, end = _thinking_region(out.response_ids, None, close_id)
        assert sum(out.response_mask[:end]) == c.thinking_tokens >= 30
        assert out.response_mask[end]  # the model closed by itself, after the floor
        text = SEED_TOK.decode(out.response_ids[:end])
        assert text.count("Wait") >= c.num_waits >= 1
        forced = [t for t, m in zip(out.response_ids[:end], out.response_mask[:end], strict=True) if not m]
        assert forced == wait * c.num_waits


def test_answer_limit_forces_eos_and_stops():
    engine = LLMEngine(_model(), SEED_TOK, num_slots=4, max_seq_len=512)
    ctrls = [make_budget_controller(SEED_TOK, 16, min_thinking_tokens=16, max_answer_tokens=12, thinking_open=True)
             for _ in range(4)]
    outs = engine.generate([Request(_prompt(SEED_TOK, 16, True), SamplingParams(max_new_tokens=200, seed=i),
                                    controller=c) for i, c in enumerate(ctrls)])
    close_id = SEED_TOK.token_to_id("</seed:think>")
    hit = 0
    for c, out in zip(ctrls, outs, strict=True):
        _, end = _thinking_region(out.response_ids, None, close_id)
        answer_sampled = sum(out.response_mask[end + 1:])
        assert out.finish_reason == "stop" and out.response_ids[-1] == EOS and answer_sampled <= 12
        if not out.response_mask[-1]:  # the forced eos
            hit += 1
            assert answer_sampled == c.answer_tokens == 12
    assert hit >= 3


def test_unbudgeted_requests_are_identical_with_budgeted_neighbours():
    model = _model()
    plain = [Request(_prompt(SEED_TOK, -1, True), SamplingParams(max_new_tokens=150, seed=100 + i,
                                                                 stop_token_ids=()), request_id=f"plain{i}")
             for i in range(4)]

    def budgeted(i: int) -> Request:
        return Request(_prompt(SEED_TOK, 600, True), SamplingParams(max_new_tokens=150, seed=i, stop_token_ids=()),
                       controller=make_budget_controller(SEED_TOK, 40, reflect=True, reflect_interval=7,
                                                         min_thinking_tokens=20, thinking_open=True))

    alone = LLMEngine(model, SEED_TOK, num_slots=8, max_seq_len=512).generate(plain)
    mixed_reqs = [r for i, p in enumerate(plain) for r in (budgeted(i), p)]
    mixed = LLMEngine(model, SEED_TOK, num_slots=8, max_seq_len=512).generate(mixed_reqs)
    assert any(not all(t.response_mask) for t in mixed[0::2])  # the neighbours did force tokens
    for a, b in zip(alone, mixed[1::2], strict=True):
        assert a.response_ids == b.response_ids
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5)
