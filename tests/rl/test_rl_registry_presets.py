"""Registry coverage (every registered name runs), presets consistency, docs coverage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import thinkrl.rl as rl
from thinkrl.rl import (
    ADVANTAGE_ESTIMATORS,
    AGG_MODES,
    ALGORITHM_PRESETS,
    KL_KINDS,
    POLICY_LOSSES,
    AdvantageInputs,
    PolicyLossInputs,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"
B, R = 6, 5


def random_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, R + 1, (B,), generator=gen)
    return {
        "rewards": torch.randint(0, 2, (B,), generator=gen).float() * 2 - 1,
        "response_mask": torch.arange(R)[None, :] < lengths[:, None],
        "group_ids": torch.tensor([0, 0, 0, 1, 1, 1]),
        "values": torch.randn(B, R, generator=gen),
    }


@pytest.mark.parametrize("name", ADVANTAGE_ESTIMATORS.names())
def test_every_advantage_estimator_runs(name: str) -> None:
    batch = random_batch()
    if name != "gae":
        batch.pop("values")
    out = ADVANTAGE_ESTIMATORS.get(name)(AdvantageInputs(**batch))
    assert out.advantages.shape == (B, R) and out.returns.shape == (B, R)
    assert torch.isfinite(out.advantages).all() and torch.isfinite(out.returns).all()
    assert (out.advantages[~batch["response_mask"]] == 0).all()


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_policy_loss_runs(name: str) -> None:
    gen = torch.Generator().manual_seed(1)
    batch = random_batch()
    logprobs = (-torch.rand(B, R, generator=gen)).requires_grad_(True)
    inputs = PolicyLossInputs(
        logprobs=logprobs,
        old_logprobs=-torch.rand(B, R, generator=gen),
        advantages=torch.randn(B, R, generator=gen),
        response_mask=batch["response_mask"],
    )
    loss, metrics = POLICY_LOSSES.get(name)(inputs)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert (logprobs.grad[~batch["response_mask"]] == 0).all()
    assert all(v.shape == () for v in metrics.to_dict().values())


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="dr_grpo.*gae.*grpo.*reinforce_pp.*rloo"):
        ADVANTAGE_ESTIMATORS.get("ppo2")
    with pytest.raises(KeyError, match="ppo_clip"):
        POLICY_LOSSES.get("cispo")


def test_expected_estimators_are_registered() -> None:
    expected = {"grpo", "dapo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae"}
    assert expected <= set(ADVANTAGE_ESTIMATORS.names())
    assert ADVANTAGE_ESTIMATORS.get("dapo") is ADVANTAGE_ESTIMATORS.get("grpo")


def test_presets_are_complete_and_valid() -> None:
    assert {"dapo", "grpo", "dr_grpo", "rloo", "reinforce_pp", "ppo", "vapo"} <= set(ALGORITHM_PRESETS)
    keys = set(ALGORITHM_PRESETS["dapo"])
    docstring = rl.presets.__doc__ or ""
    for name, preset in ALGORITHM_PRESETS.items():
        assert set(preset) == keys, f"preset {name} keys differ"
        assert preset["advantage_estimator"] in ADVANTAGE_ESTIMATORS, name
        assert preset["loss_agg_mode"] in AGG_MODES, name
        assert preset["kl_kind"] in KL_KINDS, name
        assert preset["eps_low"] <= preset["eps_high"], name
        assert preset["critic.enabled"] == (preset["advantage_estimator"] == "gae"), name
    for key in keys:
        assert f"    {key}:" in docstring, f"preset key {key} is not documented in rl/presets.py"


def test_paper_values_in_presets() -> None:
    dapo, vapo = ALGORITHM_PRESETS["dapo"], ALGORITHM_PRESETS["vapo"]
    assert (dapo["eps_low"], dapo["eps_high"], dapo["kl_coef"]) == (0.2, 0.28, 0.0)
    assert dapo["rollout.dynamic_sampling"] and dapo["reward.overlong_penalty"]
    assert dapo["loss_agg_mode"] == "token-mean"
    assert (vapo["lam_critic"], vapo["length_adaptive_alpha"], vapo["positive_lm_coef"]) == (1.0, 0.05, 0.1)
    assert (ALGORITHM_PRESETS["grpo"]["kl_kind"], ALGORITHM_PRESETS["grpo"]["kl_coef"]) == ("k3", 0.04)


def test_docs_cover_every_preset_and_estimator() -> None:
    text = DOCS.read_text()
    for name in [*ALGORITHM_PRESETS, *ADVANTAGE_ESTIMATORS.names(), *POLICY_LOSSES.names()]:
        assert f"`{name}`" in text, f"{name} missing from docs/algorithms.md"


def test_public_api_exports() -> None:
    for name in rl.__all__:
        assert hasattr(rl, name), name


def _doc_cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def test_docs_presets_table_matches_code() -> None:
    lines = [line for line in DOCS.read_text().splitlines() if line.startswith("| ")]
    header_at = next(i for i, line in enumerate(lines) if line.startswith("| key |"))
    names = [cell.strip().strip("`") for cell in lines[header_at].strip("|").split("|")[1:]]
    assert names == list(ALGORITHM_PRESETS)
    rows = {}
    for line in lines[header_at + 1 :]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] not in ALGORITHM_PRESETS["dapo"]:
            break
        rows[cells[0]] = cells[1:]
    assert set(rows) == set(ALGORITHM_PRESETS["dapo"])
    for key, cells in rows.items():
        assert cells == [_doc_cell(ALGORITHM_PRESETS[name][key]) for name in names], key
