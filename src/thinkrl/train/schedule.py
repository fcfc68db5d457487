"""Learning-rate schedules and the optimizer built from an `OptimSpec`.

The schedule is a multiplier of the peak learning rate per optimizer step:
linear warm-up over ``warmup_steps`` steps (step 0 gets 1/warmup_steps, step
warmup_steps-1 gets 1), then a decay that reaches exactly ``min_lr_ratio`` at the
last step (``total_steps - 1``) and stays there:

    cosine:   m + (1 - m) * (1 + cos(pi * p)) / 2
    linear:   m + (1 - m) * (1 - p)
    constant: 1
    with p = (step - warmup_steps) / max(1, total_steps - warmup_steps - 1), clamped to [0, 1].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from thinkrl.train.specs import OptimSpec

SCHEDULES = ("cosine", "constant", "linear")


def lr_lambda(step: int, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Raises ValueError for an unknown schedule, a negative step, ``total_steps < 1``,
    ``warmup_steps`` outside ``[0, total_steps]`` or ``min_lr_ratio`` outside [0, 1].
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} must be one of {', '.join(SCHEDULES)}")
    if step < 0:
        raise ValueError(f"step ({step}) must be >= 0")
    if total_steps < 1:
        raise ValueError(f"total_steps ({total_steps}) must be >= 1")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must lie in [0, total_steps={total_steps}]")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio ({min_lr_ratio}) must lie in [0, 1]")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, progress))
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimSpec, total_steps: int) -> LambdaLR:
    """A `LambdaLR` following ``spec.schedule``; call ``scheduler.step()`` after each optimizer step.

    Its ``state_dict()`` round-trips through `torch.save` / ``torch.load(weights_only=True)``.
    """
    if total_steps >= 1 and spec.warmup_steps > total_steps:  # (SFT: fewer steps than trainer.steps, epochs cap)
        raise ValueError(f"optim.warmup_steps ({spec.warmup_steps}) exceeds the run's {total_steps} optimizer steps; "
                         "lower it (or raise trainer.steps / epochs)")
    lr_lambda(0, spec.warmup_steps, total_steps, spec.schedule, spec.min_lr_ratio)  # validate now
    multiplier = functools.partial(
        lr_lambda,
        warmup_steps=spec.warmup_steps,
        total_steps=total_steps,
        schedule=spec.schedule,
        min_lr_ratio=spec.min_lr_ratio,
    )
    return LambdaLR(optimizer, multiplier)


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], spec: OptimSpec, *, lr: float | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable ``parameters`` with ``spec``'s betas, eps and weight decay.

    ``lr`` overrides ``spec.lr`` (e.g. ``spec.critic_lr`` for a value model). Parameters
    with ``requires_grad=False`` are skipped; none left raises ValueError.
    """
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        raise ValueError("build_optimizer got no parameters with requires_grad=True")
    return torch.optim.AdamW(
        trainable,
        lr=spec.lr if lr is None else lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=spec.weight_decay,
    )
