"""The evaluation harness: benchmark x budgets -> jobs -> a sampler -> ``samples.jsonl`` -> reports.

    problems = load_benchmark(BenchmarkSpec(data="bench.jsonl"))
    config = run_config("endpoint:http://127.0.0.1:8000/v1#tiny", spec, problems, settings, budgets=[-1])
    report = run_eval(EndpointSampler(endpoint, settings), problems, config, out="eval/", resume=False)

``<out>/config.json`` holds the run's settings; ``<out>/samples.jsonl`` one line per finished (problem, budget)
unit (`thinkrl.eval.records`). A run into a folder that already has records needs ``resume=True``; a resumed run
must have the same settings (else a ValueError lists what differs) and samples only the missing units. The
report (``report.json``, ``report.md``, ``report.png``) is always computed from the whole file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from thinkrl.eval.benchmark import BenchmarkSpec
from thinkrl.eval.metrics import EvalReport, build_report
from thinkrl.eval.records import (
    CONFIG_FILE,
    SAMPLES_FILE,
    Job,
    ProblemResult,
    RunConfig,
    append_result,
    config_differences,
    drop_incomplete_tail,
    read_config,
    read_results,
)
from thinkrl.eval.report import write_reports
from thinkrl.eval.samplers import Sampler, SampleSettings
from thinkrl.tasks import Problem

logger = logging.getLogger(__name__)


def run_config(source: str, benchmark: BenchmarkSpec, problems: list[Problem], settings: SampleSettings,
               budgets: Sequence[int]) -> RunConfig:
    """The `RunConfig` of a run (what a resumed run must match)."""
    if not budgets:
        raise ValueError("give at least one thinking budget")
    if any(b < -1 for b in budgets) or len(set(budgets)) != len(budgets):
        raise ValueError(f"budgets must be distinct and each -1 (unlimited) or >= 0, got {list(budgets)}")
    return RunConfig(source=source, benchmark=benchmark.describe(), num_problems=len(problems),
                     samples=settings.samples, budgets=list(budgets), temperature=settings.temperature,
                     top_p=settings.top_p, max_tokens=settings.max_tokens, seed=settings.seed)


def prepare_out(out: Path, config: RunConfig, resume: bool) -> list[ProblemResult]:
    """Create ``out`` (or check it for a resume) and return the records already there."""
    samples_path, config_path = out / SAMPLES_FILE, out / CONFIG_FILE
    if config_path.exists() or samples_path.exists():
        if not resume:
            raise ValueError(f"{out} already holds an evaluation run; pass --resume to continue it or choose "
                             "another --out")
        if config_path.exists():
            differences = config_differences(read_config(config_path), config)
            if differences:
                raise ValueError(f"cannot resume {out}: its settings differ ({'; '.join(differences)})")
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    done = read_results(samples_path)
    drop_incomplete_tail(samples_path)
    return done


def pending_jobs(problems: list[Problem], budgets: Sequence[int], done: list[ProblemResult]) -> list[Job]:
    """Jobs of every (problem, budget) unit without a record; a record of an unknown problem, or two records of one
    unit, is a ValueError (before anything is sampled: the report could not be built after)."""
    ids = {p.id for p in problems}
    stray = sorted({r.problem_id for r in done} - ids)
    if stray:
        raise ValueError(f"{len(stray)} finished problem(s) are not in the benchmark (e.g. {stray[0]}); "
                         "was the benchmark file changed?")
    finished: set[tuple[str, int]] = set()
    for record in done:
        if record.key in finished:
            raise ValueError(f"{SAMPLES_FILE} records problem {record.problem_id} (budget {record.thinking_budget}) "
                             "twice; was it written by two runs at once? Remove one of the two lines to resume")
        finished.add(record.key)
    return [Job(i, p, b) for b in budgets for i, p in enumerate(problems) if (p.id, b) not in finished]


def run_eval(sampler: Sampler, problems: list[Problem], config: RunConfig, out: str | Path, *, resume: bool = False,
             progress: bool = False) -> EvalReport:
    """Sample every unfinished unit into ``<out>/samples.jsonl`` and write the reports (see module docstring)."""
    out = Path(out)
    done = prepare_out(out, config, resume)
    jobs = pending_jobs(problems, config.budgets, done)
    if done:
        logger.info("resuming %s: %d of %d units finished, %d to go", out, len(done), len(done) + len(jobs),
                    len(jobs))
    with open(out / SAMPLES_FILE, "a", encoding="utf-8") as handle, _bar(progress) as bar:
        task_id = bar.add_task("eval", total=len(done) + len(jobs), completed=len(done))

        def on_done(result: ProblemResult) -> None:
            append_result(handle, result)
            bar.advance(task_id)

        if jobs:
            sampler.run(jobs, on_done)
    results = _ordered(read_results(out / SAMPLES_FILE), problems, config.budgets)
    report = build_report(config, results)
    write_reports(report, out)
    return report


def _ordered(results: list[ProblemResult], problems: list[Problem], budgets: Sequence[int]) -> list[ProblemResult]:
    """One record per unit in benchmark order (ValueError if a unit is missing or written twice)."""
    by_key: dict[tuple[str, int], ProblemResult] = {}
    for result in results:
        if result.key in by_key:
            raise ValueError(f"problem {result.problem_id} (budget {result.thinking_budget}) is recorded twice")
        by_key[result.key] = result
    missing = [(p.id, b) for b in budgets for p in problems if (p.id, b) not in by_key]
    if missing:
        raise ValueError(f"{len(missing)} unit(s) have no record after sampling (e.g. {missing[0]})")
    return [by_key[(p.id, b)] for b in budgets for p in problems]


def _bar(show: bool) -> Progress:
    """A rich progress bar on stderr (finished units / all units); ``show=False`` draws nothing."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not show)
