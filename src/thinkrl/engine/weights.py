"""The weight boundary: the engine owns its copy of the weights; new ones arrive as named tensors.

A trainer never shares tensors with the engine. After an optimizer step it sends ``(name, tensor)`` pairs
(e.g. ``model.named_parameters()``, or full tensors gathered from FSDP2 shards) and a version number; the engine
copies each into its own parameter **in place**, so the parameter storage never moves: CUDA graphs captured over
those pointers stay valid, and the KV cache and everything else the engine holds are untouched. Dtype and device
conversions happen in the copy (an fp32 trainer can feed a bf16 engine).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def named_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, detached parameter)`` pairs of ``model``: what a trainer pushes to an engine."""
    return [(name, param.detach()) for name, param in model.named_parameters()]


@torch.no_grad()
def copy_weights_into(model: torch.nn.Module, weights: Iterable[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
                      *, require_all: bool = True) -> int:
    """Copy named tensors into ``model``'s parameters in place; returns how many were copied.

    Every name and shape is checked before anything is copied, so a bad push leaves the weights as they were.

    Args:
        model: the engine's model.
        weights: ``(name, tensor)`` pairs or a name -> tensor mapping; names as in ``model.named_parameters()``.
        require_all: every parameter of ``model`` must be given (a partial push would leave a policy that no
            trainer ever had).

    Raises:
        ValueError: an unknown name, a shape mismatch, a name given twice, or (``require_all``) a missing one.
    """
    items = list(weights.items() if isinstance(weights, Mapping) else weights)
    params = dict(model.named_parameters())
    check_named_weights(params, items, require_all=require_all)
    for name, tensor in items:
        params[name].copy_(tensor, non_blocking=True)
    if any(p.device.type == "cuda" for p in params.values()):
        torch.cuda.synchronize()  # the source may be freed or changed by the trainer right after we return
    return len(items)


def check_named_weights(targets: Mapping[str, torch.Tensor], items: list[tuple[str, torch.Tensor]], *,
                        require_all: bool = True) -> None:
    """Check ``(name, tensor)`` pairs against the ``targets`` they would be copied into (names, shapes, each name
    once, and with ``require_all`` every target given), before anything is copied.

    Raises:
        ValueError: an unknown name, a name given twice, a shape mismatch, or (``require_all``) a missing one.
    """
    seen: set[str] = set()
    for name, tensor in items:
        if name not in targets:
            known = ", ".join(list(targets)[:6])
            raise ValueError(f"update_weights: unknown parameter {name!r} (the engine's model has e.g. {known})")
        if name in seen:
            raise ValueError(f"update_weights: parameter {name!r} is given twice")
        seen.add(name)
        if tuple(tensor.shape) != tuple(targets[name].shape):
            raise ValueError(f"update_weights: {name!r} has shape {tuple(tensor.shape)}, the engine's is "
                             f"{tuple(targets[name].shape)}")
    missing = [name for name in targets if name not in seen]
    if require_all and missing:
        raise ValueError(f"update_weights: {len(missing)} parameters missing, e.g. {missing[:4]}")
