"""Learning-rate schedule against hand-computed values, and the scheduler/optimizer builders."""

from __future__ import annotations

import io

import pytest
import torch

from thinkrl.train.config import OptimSpec
from thinkrl.train.schedule import build_optimizer, build_scheduler, lr_lambda

# warmup 2, total 6, min ratio 0.1: decay steps 2..5, p = (step - 2) / 3.
# cosine: 0.1 + 0.9 * (1 + cos(pi p)) / 2 -> p=1/3: 0.1 + 0.45 * 1.5 = 0.775, p=2/3: 0.1 + 0.45 * 0.5 = 0.325
COSINE = [0.5, 1.0, 1.0, 0.775, 0.325, 0.1, 0.1, 0.1]
LINEAR = [0.5, 1.0, 1.0, 0.7, 0.4, 0.1, 0.1, 0.1]  # 0.1 + 0.9 * (1 - p)
CONSTANT = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(("schedule", "expected"), [("cosine", COSINE), ("linear", LINEAR), ("constant", CONSTANT)])
def test_lr_lambda_hand_values(schedule: str, expected: list[float]) -> None:
    got = [lr_lambda(step, 2, 6, schedule, 0.1) for step in range(8)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_no_warmup_and_single_step() -> None:
    assert lr_lambda(0, 0, 5, "cosine", 0.0) == 1.0
    assert lr_lambda(2, 0, 5, "cosine", 0.0) == pytest.approx(0.5)  # p = 2/4, cos(pi/2) = 0
    assert lr_lambda(4, 0, 5, "linear", 0.0) == 0.0
    assert lr_lambda(0, 0, 1, "cosine", 0.1) == 1.0
    assert lr_lambda(0, 1, 1, "linear", 0.1) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "step"}, "schedule 'step'"),
        ({"step": -1}, "step"),
        ({"total_steps": 0}, "total_steps"),
        ({"warmup_steps": 11}, "warmup_steps"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_lr_lambda_rejects_bad_values(kwargs: dict, match: str) -> None:
    args = {"step": 0, "warmup_steps": 2, "total_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        lr_lambda(**args)


def test_build_scheduler_drives_a_real_optimizer() -> None:
    param = torch.nn.Parameter(torch.ones(3))
    spec = OptimSpec(lr=2.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    optimizer = build_optimizer([param], spec)
    scheduler = build_scheduler(optimizer, spec, total_steps=6)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        param.sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    assert seen == pytest.approx([2.0 * m for m in COSINE[:6]])


def test_scheduler_state_round_trips_with_weights_only() -> None:
    param = torch.nn.Parameter(torch.ones(2))
    spec = OptimSpec(lr=1.0, warmup_steps=1, schedule="linear", min_lr_ratio=0.0)
    optimizer = build_optimizer([param], spec)
    scheduler = build_scheduler(optimizer, spec, total_steps=5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    fresh_opt = build_optimizer([torch.nn.Parameter(torch.ones(2))], spec)
    fresh = build_scheduler(fresh_opt, spec, total_steps=5)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.last_epoch == 3
    # warmup 1, total 5: p = (step - 1) / 3 -> step 3: 1 - 2/3, step 4: 0
    assert fresh.get_last_lr() == scheduler.get_last_lr() == pytest.approx([1.0 / 3.0])
    fresh_opt.step()
    fresh.step()
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_build_optimizer_uses_spec_and_skips_frozen() -> None:
    trainable, frozen = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    spec = OptimSpec(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, eps=1e-6)
    optimizer = build_optimizer([trainable, frozen], spec, lr=0.5)
    group = optimizer.param_groups[0]
    assert group["params"] == [trainable]
    assert (group["lr"], group["betas"], group["weight_decay"], group["eps"]) == (0.5, (0.8, 0.9), 0.1, 1e-6)
    with pytest.raises(ValueError, match="requires_grad"):
        build_optimizer([frozen], spec)


def test_clipped_step_clips_and_steps_or_refuses_a_non_finite_gradient():
    import pytest
    import torch

    from thinkrl.train.common import clipped_step

    weight = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    weight.grad = torch.tensor([3.0, 4.0])  # norm 5, clipped to 1 -> step of (0.6, 0.8)
    assert clipped_step(optimizer, [weight], 1.0, FloatingPointError) == pytest.approx(5.0)
    torch.testing.assert_close(weight.detach(), torch.tensor([0.4, 0.2]))
    weight.grad = torch.tensor([float("nan"), 1.0])
    with pytest.raises(FloatingPointError, match="critic gradient norm is nan; the step was not applied"):
        clipped_step(optimizer, [weight], None, FloatingPointError, "critic gradient")
    torch.testing.assert_close(weight.detach(), torch.tensor([0.4, 0.2]))  # unchanged
    assert weight.grad is None  # cleared, so the next step does not inherit the NaN
