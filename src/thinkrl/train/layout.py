"""`thinkrl train/sft --layout layout.yaml`: run with the parallel layout `thinkrl tune` chose.

A layout (`thinkrl.tune.ParallelLayout`) becomes recipe overrides, so the resolved recipe saved with the run shows
what was applied: its micro-batch token budget (``trainer.micro_batch_tokens``) and its recompute choice
(``trainer.activation_checkpointing``). Parts of a layout a single training process cannot honour — several ranks
(fsdp, cp, tp, ep > 1) or offload — are refused with a message saying so, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from thinkrl.tune.layout import ParallelLayout, load_layout


def layout_overrides(layout: ParallelLayout) -> list[str]:
    """The recipe overrides of ``layout`` for a single-process run.

    Raises:
        ValueError: the layout needs several ranks or offload, which `thinkrl train` cannot run yet.
    """
    ranks = layout.tp * layout.cp * layout.fsdp
    if ranks > 1 or layout.ep > 1:
        raise ValueError(f"layout {layout.describe()} shards the model over {max(ranks, layout.ep)} ranks; "
                         "thinkrl train runs one process so far (multi-rank training: docs/distributed.md)")
    if layout.offload != "none":
        raise ValueError(f"layout offload {layout.offload!r} is not supported by thinkrl train yet")
    return [f"trainer.micro_batch_tokens={layout.micro_batch_tokens}",
            f"trainer.activation_checkpointing={'true' if layout.recompute == 'full' else 'false'}"]


def overrides_from_layout(path: str | Path | None) -> list[str]:
    """`layout_overrides` of the layout file at ``path`` (none without one)."""
    return [] if path is None else layout_overrides(load_layout(path))
