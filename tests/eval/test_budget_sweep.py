"""Budget sweep: enforcement always adheres; counting without enforcement; table and plot."""

from __future__ import annotations

import pytest

from thinkrl.engine import LLMEngine
from thinkrl.eval.budget_sweep import plot_budget_curves, points_table, sweep_budgets
from thinkrl.model import ModelConfig, build_model
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer

OPENING_TEMPLATE = (
    "{%- for m in messages %}<seed:bos>{{ m.role }}\n{{ m.content }}<seed:eos>{% endfor %}"
    "{%- if add_generation_prompt %}<seed:bos>assistant\n<seed:think>{% endif %}"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # A template whose generation prompt opens the thinking block (as Qwen3-style templates do): a random model
    # then starts thinking at once and almost never closes it — the worst case for adherence.
    template = tmp_path_factory.mktemp("tpl") / "opening.jinja"
    template.write_text(OPENING_TEMPLATE)
    tok = load_tokenizer("builtin", chat_template=template)
    model = build_model(ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1), seed=0).eval()
    problems = generate_dataset("arithmetic", 3, 0, "test", {"num_terms": 2, "max_number": 5})
    return LLMEngine(model, tok, num_slots=8, max_seq_len=400), tok, problems


def test_enforced_budgets_always_adhere_and_unenforced_are_counted(setup):
    engine, tok, problems = setup
    budgets = [4, 8, -1]
    free = sweep_budgets(engine, tok, problems, budgets, enforce=False, samples=2, max_new_tokens=40)
    forced = sweep_budgets(engine, tok, problems, budgets, enforce=True, samples=2, max_new_tokens=40)
    assert [p.num_responses for p in free] == [6, 6, 6]
    for p in forced[:2]:
        assert p.enforced and p.adherence == 1.0 and p.mean_thinking_tokens <= p.budget
    for p in free[:2]:  # a random model overruns a tiny budget
        assert p.adherence < 1.0 and p.overshoots and all(o > 0 for o in p.overshoots)
        assert p.mean_thinking_tokens > p.budget
    table = points_table("arithmetic", free, forced)
    assert table.count("\n") == 2 + len(budgets) - 1 and "| unlimited |" in table


def test_plot_writes_png(setup, tmp_path):
    engine, tok, problems = setup
    points = sweep_budgets(engine, tok, problems, [0, -1], enforce=True, samples=1, max_new_tokens=16)
    out = plot_budget_curves({"arithmetic": points}, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
