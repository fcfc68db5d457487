"""The files of an evaluation report: ``report.json`` (`EvalReport`), ``report.md`` (a table) and ``report.png``
(accuracy vs thinking budget when several budgets were run, else pass@k vs k, with the 95% intervals)."""

from __future__ import annotations

from pathlib import Path

from thinkrl.eval.metrics import BudgetMetrics, Estimate, EvalReport


def budget_label(budget: int) -> str:
    return "unlimited" if budget < 0 else str(budget)


def _cell(value: Estimate) -> str:
    if value.low is None or value.high is None:
        return f"{value.mean:.3f}"
    return f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"


def markdown_table(report: EvalReport) -> str:
    """One row per budget: avg@k and every pass@k with their 95% intervals, token means, truncated share."""
    ks = list(report.budgets[0].pass_at)
    n = report.config.samples
    head = ["thinking budget", "problems", f"avg@{n}", *[f"pass@{k}" for k in ks], "mean response tokens",
            "mean thinking tokens", "truncated"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in report.budgets:
        cells = [budget_label(m.thinking_budget), str(m.num_problems), _cell(m.avg_at_k),
                 *[_cell(m.pass_at[k]) for k in ks], f"{m.mean_response_tokens:.1f}",
                 f"{m.mean_thinking_tokens:.1f}", f"{m.truncated:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: EvalReport) -> str:
    """``report.md``: the settings, the table, and the verifier reasons per budget."""
    c = report.config
    lines = [f"# Evaluation: {c.source}", "", f"- benchmark: `{c.benchmark}` ({c.num_problems} problems)",
             f"- k = {c.samples} samples per problem; temperature {c.temperature}, top_p {c.top_p}, "
             f"max_tokens {c.max_tokens}, seed {c.seed}",
             f"- intervals: {round(report.confidence * 100)}% {report.interval} (mean +- 1.96 s / sqrt(m))", "",
             markdown_table(report), "", "Verifier reasons (all samples):", ""]
    lines += [f"- budget {budget_label(m.thinking_budget)}: " + ", ".join(f"{r} {c}" for r, c in m.reasons.items())
              for m in report.budgets]
    return "\n".join(lines) + "\n"


def _errors(points: list[Estimate]) -> list[list[float]]:
    """matplotlib's (2, N) error bars; a missing interval draws none."""
    return [[p.mean - (p.low if p.low is not None else p.mean) for p in points],
            [(p.high if p.high is not None else p.mean) - p.mean for p in points]]


def plot_report(report: EvalReport, out_png: str | Path) -> Path:
    """Accuracy (avg@k) vs thinking budget for several budgets, else pass@k vs k; 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if len(report.budgets) > 1:
        points = [m.avg_at_k for m in report.budgets]
        ax.errorbar(range(len(points)), [p.mean for p in points], yerr=_errors(points), marker="o", capsize=3)
        ax.set_xticks(range(len(points)), [budget_label(m.thinking_budget) for m in report.budgets])
        ax.set_xlabel("thinking budget (tokens)")
        ax.set_ylabel(f"accuracy (avg@{report.config.samples})")
    else:
        metrics: BudgetMetrics = report.budgets[0]
        ks = list(metrics.pass_at)
        points = [metrics.pass_at[k] for k in ks]
        ax.errorbar([int(k) for k in ks], [p.mean for p in points], yerr=_errors(points), marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks([int(k) for k in ks], ks)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (unbiased)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(report.config.source, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def write_reports(report: EvalReport, out: str | Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``report.png`` in ``out``."""
    out = Path(out)
    paths = [out / "report.json", out / "report.md", out / "report.png"]
    paths[0].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown_report(report), encoding="utf-8")
    plot_report(report, paths[2])
    return paths
