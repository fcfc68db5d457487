"""Calendar arithmetic (Gregorian calendar): dates plus or minus days, weekdays, and days between dates.

Three kinds of question (each enabled by a knob), e.g.::

    What date is 137 days after 2023-03-14? Answer with the date as YYYY-MM-DD.
    What day of the week is 2021-07-04? Answer with the English weekday name, for example Monday.
    How many days are there from 2021-03-01 to 2021-07-04 (the next day counts as 1)? Answer with one integer.

Ground truth: ``kind`` (``add_days``, ``weekday`` or ``days_between``), the dates
as ISO text, ``days`` for add_days (negative = before), and ``answer``. Dates are
computed with `datetime.date` (proleptic Gregorian calendar).

Verification: add_days wants ``YYYY-MM-DD`` (a real date), weekday a full
English weekday name (any case), days_between one integer; another form is
"unparseable", another value "wrong value".

Traces: add_days steps by whole years, then months, then days (``+1 month ->
2023-05-14: 30 days, 60 left``); weekday counts from Saturday 2000-01-01 to
1 January of the year, then to the date; days_between adds the days left in the
first year, whole years, and the day of the year of the end. A noisy trace
miscounts one step by a day.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Mapping
from typing import Any

from thinkrl.tasks.base import Knob, Problem, Task, Trace, Verdict, check_noise, require
from thinkrl.tasks.registry import TASKS

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ANCHOR = dt.date(2000, 1, 1)  # a Saturday
KINDS = ("add_days", "weekday", "days_between")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_INTEGER = re.compile(r"[+-]?\d{1,9}")


def shift_month(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months (its day of month must be <= 28)."""
    index = day.year * 12 + day.month - 1 + months
    return day.replace(year=index // 12, month=index % 12 + 1)


def add_days_steps(start: dt.date, days: int, slip_at: int = -1, slip: int = 0) -> tuple[list[str], dt.date]:
    """Lines stepping ``days`` (sign = direction) by years, months, then days.

    Step number ``slip_at`` miscounts its days by ``slip`` (for noisy traces).
    """
    sign, left, here = (1 if days >= 0 else -1), abs(days), start
    lines: list[str] = []

    def step(target: dt.date, label: str) -> None:
        nonlocal left, here
        size = abs((target - here).days)
        left -= size + (slip if len(lines) == slip_at else 0)
        here = target
        lines.append(f"{label} -> {here.isoformat()}: {size} days, {left} left")

    if here.day > 28 and left:
        target = (shift_month(here.replace(day=1), 1)) if sign > 0 else here.replace(day=28)
        if abs((target - here).days) <= left:
            step(target, "to the 1st" if sign > 0 else "to the 28th")
    for unit, months in (("year", 12), ("month", 1)):
        while here.day <= 28 and left > 0:
            target = shift_month(here, sign * months)
            if abs((target - here).days) > left:
                break
            step(target, f"{'+' if sign > 0 else '-'}1 {unit}")
    end = here + dt.timedelta(days=sign * left)
    lines.append(f"{'+' if sign > 0 else '-'}{left} days -> {end.isoformat()}")
    return lines, end


def weekday_steps(day: dt.date, slip: int = 0) -> tuple[list[str], str]:
    """Lines finding the weekday of ``day`` from Saturday 2000-01-01; ``slip`` miscounts the day of the year."""
    january = dt.date(day.year, 1, 1)
    years, total = day.year - 2000, (january - ANCHOR).days
    leap = total - 365 * years
    first = WEEKDAYS[(5 + total) % 7]
    offset = (day - january).days + slip
    name = WEEKDAYS[(5 + total + offset) % 7]
    return [
        f"2000-01-01 was a Saturday. {years:+d} years with {leap:+d} leap days: "
        f"{365 * years + leap:+d} days, so {january.isoformat()} is a {first}.",
        f"{day.isoformat()} is {offset} days after {january.isoformat()}; {offset} mod 7 = {offset % 7}; "
        f"{first} + {offset % 7} = {name}.",
    ], name


def between_steps(start: dt.date, end: dt.date, slip: int = 0) -> tuple[list[str], int]:
    """Lines counting the days from ``start`` to ``end`` (end later or equal); ``slip`` miscounts one part."""
    doy_start, doy_end = start.timetuple().tm_yday, end.timetuple().tm_yday + slip
    if start.year == end.year:
        return [f"{start} is day {doy_start}, {end} is day {doy_end} of {start.year}: {doy_end - doy_start}"], (
            doy_end - doy_start
        )
    length = (dt.date(start.year + 1, 1, 1) - dt.date(start.year, 1, 1)).days
    middle = (dt.date(end.year, 1, 1) - dt.date(start.year + 1, 1, 1)).days
    total = (length - doy_start) + middle + doy_end
    return [
        f"{start} is day {doy_start} of {length}: {length - doy_start} days to the end of {start.year}",
        f"whole years {start.year + 1}..{end.year - 1}: {middle} days",
        f"{end} is day {doy_end} of {end.year}",
        f"{length - doy_start} + {middle} + {doy_end} = {total}",
    ], total


@TASKS.register("calendar_arithmetic")
class CalendarArithmeticTask(Task):
    """Date plus days, weekday of a date, or days between two dates."""

    name = "calendar_arithmetic"
    difficulty_knobs = (
        Knob("min_year", int, 1950, 1600, 9000, "earliest year of a date"),
        Knob("max_year", int, 2050, 1600, 9000, "latest year of a date"),
        Knob("max_days", int, 400, 1, 20000, "largest day offset or distance"),
        Knob("ask_add_days", bool, True, help="ask for a date N days before or after another"),
        Knob("ask_weekday", bool, True, help="ask for the weekday of a date"),
        Knob("ask_days_between", bool, True, help="ask for the number of days between two dates"),
    )

    def check_difficulty(self, difficulty: dict[str, Any]) -> None:
        """min_year <= max_year, at least one kind of question."""
        if difficulty["min_year"] > difficulty["max_year"]:
            raise ValueError(f"min_year ({difficulty['min_year']}) must be <= max_year ({difficulty['max_year']})")
        if not any(difficulty[f"ask_{kind}"] for kind in KINDS):
            raise ValueError("at least one of ask_add_days, ask_weekday, ask_days_between must be true")

    def build(self, rng: random.Random, difficulty: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A random date in range and a random enabled question about it."""
        low, high = dt.date(difficulty["min_year"], 1, 1), dt.date(difficulty["max_year"], 12, 31)
        kind = rng.choice([k for k in KINDS if difficulty[f"ask_{k}"]])
        start = low + dt.timedelta(days=rng.randint(0, (high - low).days))
        if kind == "weekday":
            prompt = f"What day of the week is {start}? Answer with the English weekday name, for example Monday."
            return prompt, {"kind": kind, "date": start.isoformat(), "answer": WEEKDAYS[start.weekday()]}
        days = rng.randint(1, difficulty["max_days"])
        if kind == "days_between":
            end = start + dt.timedelta(days=days)
            prompt = (
                f"How many days are there from {start} to {end} (the next day counts as 1)? Answer with one integer."
            )
            return prompt, {"kind": kind, "date": start.isoformat(), "end": end.isoformat(), "answer": str(days)}
        days = days if rng.random() < 0.6 else -days
        end = start + dt.timedelta(days=days)
        prompt = (
            f"What date is {abs(days)} day{'s' if abs(days) > 1 else ''} {'after' if days > 0 else 'before'} "
            f"{start}? Answer with the date as YYYY-MM-DD."
        )
        return prompt, {"kind": kind, "date": start.isoformat(), "days": days, "answer": end.isoformat()}

    def canonical_key(self, ground_truth: Mapping[str, Any]) -> str:
        """Kind, date and the offset or end date."""
        kind = require(ground_truth, "kind", str)
        extra = ground_truth.get("days", ground_truth.get("end", ""))
        return f"{kind}:{require(ground_truth, 'date', str)}:{extra}"

    def check(self, ground_truth: Mapping[str, Any], answer: str) -> Verdict:
        """Compare in the kind's format: ISO date, weekday name or integer."""
        kind, expected = require(ground_truth, "kind", str), require(ground_truth, "answer", str)
        text = answer.strip()
        if kind == "add_days":
            match = _DATE.fullmatch(text)
            try:
                value = dt.date(*map(int, match.groups())).isoformat() if match else None
            except ValueError:
                value = None
            if value is None:
                return Verdict.wrong("unparseable", f"expected a real date as YYYY-MM-DD, got {text[:40]!r}")
        elif kind == "weekday":
            value = text.capitalize()
            if value not in WEEKDAYS:
                return Verdict.wrong("unparseable", f"expected a weekday name, got {text[:40]!r}")
        elif kind == "days_between":
            if not _INTEGER.fullmatch(text):
                return Verdict.wrong("unparseable", f"expected one integer, got {text[:40]!r}")
            value = str(int(text))
        else:
            raise ValueError(f"calendar_arithmetic kind must be one of {KINDS}, got {kind!r}")
        if value != expected:
            return Verdict.wrong("wrong value", f"{value} is not {expected}")
        return Verdict.right(expected)

    def write_trace(self, problem: Problem, rng: random.Random, noise: float = 0.0) -> Trace:
        """Kind-specific counting; noise miscounts one step by a day."""
        noise = check_noise(noise)
        truth = problem.ground_truth
        kind, start = require(truth, "kind", str), dt.date.fromisoformat(require(truth, "date", str))
        slip = rng.choice((-1, 1)) if rng.random() < noise else 0
        if kind == "add_days":
            days = require(truth, "days", int)
            steps = len(add_days_steps(start, days)[0]) - 1
            lines, end = add_days_steps(start, days, rng.randrange(steps) if steps else -1, slip)
            if slip and not steps:  # no intermediate step: the last count slips
                end += dt.timedelta(days=slip)
                lines[-1] = f"{lines[-1].split(' -> ')[0]} -> {end.isoformat()}"
            return Trace("\n".join(lines), end.isoformat())
        if kind == "weekday":
            lines, name = weekday_steps(start, slip)
            return Trace("\n".join(lines), name)
        lines, total = between_steps(start, dt.date.fromisoformat(require(truth, "end", str)), slip)
        return Trace("\n".join(lines), str(total))
