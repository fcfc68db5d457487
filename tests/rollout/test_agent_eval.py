"""agent_eval's ``--greedy-only``: the same greedy-with-tools figure as the full evaluation, and nothing else."""

from __future__ import annotations

import json

from thinkrl.rollout.agent_eval import main as agent_eval_main
from thinkrl.train.common import save_policy

RECIPE = """\
model: {device: cpu}
data: {task: big_arithmetic, num_test: 3, seed: 0, difficulty: {digits: 2}}
agent: {environment: big_arithmetic, max_turns: 5, max_tokens_per_turn: 48, max_total_tokens: 200}
sampling: {temperature: 1.0, max_new_tokens: 48, num_slots: 8}
"""


def test_greedy_only_gives_the_full_evaluations_greedy_with_tools_figure(calculator_policy, tmp_path, capsys) -> None:
    tok, _, _, _, model = calculator_policy
    folder = save_policy(model, tok, tmp_path / "policy")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    common = ["--model", str(folder), "--recipe", str(recipe), "--validation", "2", "--samples", "1"]
    assert agent_eval_main([*common, "--out", str(tmp_path / "full.json")]) == 0
    assert agent_eval_main([*common, "--greedy-only", "--out", str(tmp_path / "greedy.json")]) == 0
    capsys.readouterr()
    full = json.loads((tmp_path / "full.json").read_text(encoding="utf-8"))
    greedy = json.loads((tmp_path / "greedy.json").read_text(encoding="utf-8"))
    assert set(full) - set(greedy) == {"no_tools"} and set(full["tools"]) == {"greedy", "sampled"}
    assert set(greedy["tools"]) == {"greedy"}
    assert greedy["split"] == "validation" and greedy["num_problems"] == 2
    assert greedy["tools"]["greedy"] == full["tools"]["greedy"]
    # the micro model was fitted to a calculator transcript: its greedy episodes do call the tool
    assert greedy["tools"]["greedy"]["metrics"]["agent/tool_calls_mean"] > 0
