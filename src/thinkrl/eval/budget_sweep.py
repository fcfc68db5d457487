"""Accuracy vs thinking budget, and budget adherence with and without enforcement.

For each budget, every held-out problem is rendered with that budget in its prompt (the Seed-OSS budget system
turn) and sampled ``samples`` times. A counting `ThinkingBudgetController` rides along with every request:
without enforcement it only counts the sampled thinking tokens (adherence = the thinking block closed within the
budget); with enforcement it forces the end of thinking at the budget (adherence must then be 100%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from thinkrl.eval.evaluate import eval_requests
from thinkrl.rollout import GenerateClient, judge, sample
from thinkrl.tasks import Problem
from thinkrl.tokenizer import TextTokenizer


@dataclass
class BudgetPoint:
    """One (budget, enforcement) cell of a sweep.

    Fields:
        budget: thinking budget rendered in the prompt (-1 unlimited).
        enforced: the engine forced the end of thinking at the budget.
        accuracy: mean correctness over problems x samples.
        adherence: share of responses not left inside an open thinking block whose thinking tokens are within
            the budget (budget -1: thinking closed at all).
        mean_thinking_tokens: sampled thinking tokens per response.
        overshoots: thinking tokens beyond the budget, for each response that went over (or never closed).
        num_responses: problems x samples.
    """

    budget: int
    enforced: bool
    accuracy: float
    adherence: float
    mean_thinking_tokens: float
    overshoots: list[int] = field(default_factory=list)
    num_responses: int = 0


def sweep_budgets(client: GenerateClient, tokenizer: TextTokenizer, problems: list[Problem], budgets: list[int], *,
                  enforce: bool, samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 256,
                  seed: int = 0, top_p: float = 1.0) -> list[BudgetPoint]:
    """One `BudgetPoint` per budget (see module docstring); requests as `thinkrl.eval.evaluate.eval_requests`."""
    points = []
    for budget in budgets:
        items = eval_requests(tokenizer, problems, samples=samples, temperature=temperature,
                              max_new_tokens=max_new_tokens, thinking_budget=budget, seed=seed, top_p=top_p)
        trajs = sample(client, tokenizer, items, enforce_budget=enforce)
        judge(trajs, tokenizer)
        n = max(1, len(trajs))
        overshoots = [max(0, int(t.thinking_tokens or 0) - budget) for t in trajs if not t.kept_budget and budget >= 0]
        points.append(BudgetPoint(budget, enforce and budget >= 0, sum(bool(t.correct) for t in trajs) / n,
                                  sum(bool(t.kept_budget) for t in trajs) / n,
                                  sum(int(t.thinking_tokens or 0) for t in trajs) / n, overshoots, len(trajs)))
    return points


def budget_label(budget: int) -> str:
    return "unlimited" if budget < 0 else str(budget)


def points_table(task: str, free: list[BudgetPoint], enforced: list[BudgetPoint]) -> str:
    """Markdown table: accuracy and adherence per budget, without and with enforcement."""
    lines = [f"| {task}: budget | accuracy | adherence (not enforced) | mean thinking tokens | max overshoot | "
             "accuracy (enforced) | adherence (enforced) |", "|---|---|---|---|---|---|---|"]
    for a, b in zip(free, enforced, strict=True):
        lines.append(f"| {budget_label(a.budget)} | {a.accuracy:.3f} | {a.adherence:.3f} | "
                     f"{a.mean_thinking_tokens:.1f} | {max(a.overshoots, default=0)} | {b.accuracy:.3f} | "
                     f"{b.adherence:.3f} |")
    return "\n".join(lines)


def plot_budget_curves(curves: dict[str, list[BudgetPoint]], out_png: str | Path) -> Path:
    """Accuracy vs budget, one line per task (unlimited drawn at the right end), like the Seed-OSS figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot(range(len(points)), [p.accuracy for p in points], marker="o", label=name)
        labels = [budget_label(p.budget) for p in points]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
