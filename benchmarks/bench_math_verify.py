r"""Math answer verification: thinkrl's verifier vs the ``math-verify`` package (throughput, FP/FN vs labels).

Corpora (``--corpus``):

- ``outside`` (default): ``benchmarks/data/math_verify_tests.jsonl``, the labelled ``(gold, pred,
  expected)`` pairs of math-verify 0.9.0's own test-suite (shipped in its PyPI sdist, Apache-2.0),
  plus shuffled unequal pairs of its model outputs; built by ``benchmarks/math_verify_corpus.py``.
  Nobody on thinkrl wrote or labelled them.
- ``own``: ``benchmarks/data/math_pairs.jsonl``, built by `build_corpus` from hand-written cases
  wrapped in response templates; thinkrl was developed against it, so it measures little.

Errors are counted against the labels, false positives (accepted, label unequal) and false negatives
(rejected, label equal) apart. Timing on equal terms, two ways:

- *warm pooled*: both verifiers in ``--workers`` processes, freshly started and warmed on the same
  pairs for every pass, each with a parse cache of 4,096 entries (thinkrl's own ``parse_answer``
  cache; math-verify's ``parse`` results memoised the same way), so repeated references help both;
  thinkrl through ``MathVerifier.verify_batch`` (per-pair hard timeout), math-verify through
  ``verify(parse(gold), parse(pred))`` with the extraction targets its own test gives the pair (LaTeX
  and expressions by default) in a ``multiprocessing.Pool`` (its own signal timeouts);
- *cold in-process*: one process, no cache on either side (thinkrl's is cleared before every pair).

    thinkrl bench math-verify [--corpus outside|own] [--workers 2] [--repeats 3] [--markdown FILE]
    python benchmarks/bench_math_verify.py --write-corpus   # rebuild the own corpus file
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import time
from pathlib import Path

from _cli import check_at_least  # siblings: benchmarks/ is on sys.path
from thinkrl.rewards.math import MathVerifier, score_answer

# -- corpus cases: (reference, answers equal to it, answers not equal to it) -----------------------
CASES: dict[str, list[tuple[str, list[str], list[str]]]] = {
    "integers": [
        ("42", ["42", "42.0", "+42", r"\mathbf{42}"], ["41", "-42", "420", "4.2"]),
        ("-7", ["-7", "-7.0", "- 7", r"\left(-7\right)"], ["7", "-6", "-17"]),
        ("0", ["0", "0.0", "-0"], ["1", "0.01", "-1"]),
    ],
    "fractions": [
        (r"\frac{3}{4}",
         [r"\dfrac{3}{4}", "3/4", "0.75", r"\frac{6}{8}", r"\tfrac34", r"\frac{3}{4}"],
         [r"\frac{4}{3}", "0.7", "3/5", "0.76"]),
        (r"-\frac{5}{2}", ["-2.5", r"\frac{-5}{2}", "-5/2", r"-2\frac{1}{2}"], [r"\frac52", "-2.4", r"-\frac{2}{5}"]),
        (r"\frac{7}{12}", [r"\frac{14}{24}", "7/12", r"\dfrac{7}{12}"], [r"\frac{7}{13}", "0.58", r"\frac{12}{7}"]),
        (r"\frac{1}{3}", ["0.333333", "0.3333333", "1/3", r"\frac{2}{6}"], ["0.33", "0.3333", "0.3", r"\frac{1}{4}"]),
        (r"\frac{22}{7}", [r"\frac{44}{14}", "22/7", r"3\frac{1}{7}"], [r"\pi", "3.14", r"\frac{7}{22}"]),
        (r"\frac{2}{3}", ["0.6666667", r"\frac{4}{6}", "2/3"], ["0.67", "0.6", r"\frac{3}{2}"]),
    ],
    "radicals": [
        (r"2\sqrt{3}",
         [r"\sqrt{12}", r"2 \sqrt 3", r"\sqrt{3} \cdot 2", r"2\sqrt3", "3.4641016"],
         [r"3\sqrt{2}", r"\sqrt{6}", "3.46"]),
        (r"\frac{\sqrt{2}}{2}",
         [r"\frac{1}{\sqrt{2}}", r"\sqrt{2}/2", "0.70710678", r"\frac{\sqrt2}{2}"],
         [r"\sqrt2", r"\frac{\sqrt{3}}{2}", "0.7"]),
        (r"5\sqrt{2}", [r"\sqrt{50}", r"5 \sqrt{2}", r"\sqrt{2} \times 5"], [r"2\sqrt{5}", r"\sqrt{10}", "7"]),
        (r"\sqrt[3]{2}", ["2^{1/3}", r"2^{\frac{1}{3}}", r"\sqrt[3]{2}"], [r"\sqrt{2}", "2^{3}", r"\frac{2}{3}"]),
        (r"3+2\sqrt{2}",
         [r"2\sqrt{2}+3", r"(1+\sqrt{2})^2", r"3 + \sqrt{8}"],
         [r"3-2\sqrt{2}", r"5\sqrt{2}", r"3+\sqrt{2}"]),
        (r"\frac{1+\sqrt{5}}{2}",
         [r"\frac{\sqrt{5}+1}{2}", r"\frac{1}{2}+\frac{\sqrt{5}}{2}", "1.6180339887"],
         [r"\frac{1-\sqrt{5}}{2}", r"1+\sqrt{5}", "1.62"]),
    ],
    "constants and functions": [
        (r"2\pi", [r"2 \pi", r"\pi \cdot 2", "6.283185307", r"\frac{4\pi}{2}"], [r"\pi", "6.28", r"4\pi"]),
        (r"\frac{\pi}{3}", [r"\pi/3", r"\frac{1}{3}\pi", r"\frac{\pi}{3}"], [r"\frac{\pi}{6}", r"3\pi", "1.04"]),
        (r"16\pi", [r"16 \pi", r"\pi \cdot 16", r"16\pi \text{ square units}"], [r"8\pi", "16", r"32\pi"]),
        ("e^2", ["e^{2}", r"\exp(2)", r"e \cdot e"], ["2e", "e^3", r"\ln 2"]),
        ("3", [r"\log_2 8", r"\log_{2}{8}", r"\ln(e^3)"], [r"\log_2 9", r"\log 3"]),
        (r"\frac{\sqrt{3}}{2}",
         [r"\sin(\pi/3)", r"\cos\frac{\pi}{6}", r"\sin 60^\circ"],
         [r"\frac12", r"\sin(\pi/6)", r"\sqrt{3}"]),
        ("1", [r"\sin^2 x + \cos^2 x", r"\tan\frac{\pi}{4}"], [r"\sin x", r"\cos 1"]),
    ],
    "degrees": [
        (r"30^\circ", ["30", r"30^{\circ}", "30 degrees", r"\frac{\pi}{6}", "30°"],
         [r"60^\circ", "45", r"\frac{\pi}{3}"]),
        (r"120^\circ", ["120", r"120^{\circ}", r"\frac{2\pi}{3}"], [r"60^\circ", "121", r"\frac{\pi}{3}"]),
        (r"45^{\circ}", ["45", r"45^\circ", r"45\degree"], ["135", r"90^\circ"]),
    ],
    "percent": [
        (r"25\%", ["25%", "25", "0.25", "25 percent", r"\frac{1}{4}"], ["0.025", r"20\%", "2.5"]),
        ("0.15", [r"15\%", "15%", r"\frac{3}{20}"], [r"1.5\%", "0.16", r"\frac{1}{5}"]),
        (r"12.5\%", ["12.5%", "12.5", r"\frac{1}{8}"], ["12", r"125\%", "0.0125"]),
    ],
    "text": [
        (r"\text{Monday}", [r"\text{Monday}", r"\textbf{Monday}", r"\text{monday}"],
         [r"\text{Tuesday}", r"\text{Sunday}"]),
        (r"\text{(C)}", ["(C)", r"\text{C}", "C", r"\textbf{(C)}"], ["(B)", r"\text{D}", "A"]),
        (r"\text{odd}", [r"\text{odd}", r"\text{Odd}"], [r"\text{even}", r"\text{neither}"]),
        (r"\text{Evelyn}", [r"\text{Evelyn}", r"\textbf{Evelyn}"], [r"\text{Emily}", r"\text{Bob}"]),
    ],
    "units": [
        ("12",
         [r"12 \text{ cm}", "12 inches", r"12\,\mathrm{m}^2", r"12 \text{ square units}", "12 cm"],
         ["13 cm", r"21 \text{ inches}", "1.2"]),
        ("18", [r"\$18", r"18 \text{ dollars}", r"\$18.00", "18 dollars"], [r"\$17", r"\$81", "1.8"]),
        ("5", [r"5 \text{ hours}", r"5\text{ km}", "5 meters", r"5 \mathrm{kg}"], ["6 hours", r"50 \text{ km}", "0.5"]),
        ("150", [r"150 \text{ miles}", "150 feet", r"150\ \text{seconds}"], ["15 miles", r"160\text{ feet}"]),
    ],
    "large numbers": [
        ("1000000",
         ["1,000,000", "1{,}000{,}000", "10^6", r"1\,000\,000", "1000000", "10^{6}"],
         ["100000", "1,000,001", "10^7"]),
        ("12345", ["12,345", "12{,}345", "12345.0"], ["12,346", "1,234", "123,45"]),
        ("2^{100}",
         ["1267650600228229401496703205376", "2^{100}", "4^{50}"],
         ["1267650600228229401496703205377", "2^{99}", "100^2"]),
        (r"6.02 \times 10^{23}",
         [r"6.02\cdot 10^{23}", "602000000000000000000000", r"60.2 \times 10^{22}"],
         [r"6.02\times10^{22}", r"6.2\times 10^{23}"]),
        ("3.14159", ["3.14159", "3.141590"], ["3.1416", "3.14", r"\frac{22}{7}"]),
    ],
    "tuples": [
        ("(1, 2)", ["(1,2)", r"\left(1, 2\right)", "(1.0, 2)", "( 1 , 2 )"], ["(2, 1)", "(1, 3)", "(1, 2, 3)"]),
        (r"(3, -\frac{1}{2})",
         [r"\left(3,-\frac12\right)", "(3, -0.5)", r"(3, -\dfrac{1}{2})"],
         [r"(3, \frac{1}{2})", r"(-\frac{1}{2}, 3)"]),
        ("(0, 0, 1)", ["(0,0,1)", r"\left( 0, 0, 1 \right)"], ["(0, 1, 0)", "(1, 0, 0)", "(0,0)"]),
        (r"\langle 2, -1 \rangle", [r"\langle 2,-1\rangle", "(2, -1)"], [r"\langle -1, 2 \rangle", "(2, 1)"]),
    ],
    "sets and lists": [
        (r"\{1, 2, 3\}",
         [r"\{3, 2, 1\}", r"\{1,2,3\}", r"\left\{2, 1, 3\right\}"],
         [r"\{1, 2\}", r"\{1,2,4\}", r"\{1,2,3,4\}"]),
        ("2, 3", ["3, 2", "2,3", r"2 \text{ and } 3", "x=2, x=3"], ["2", "2, 4", "3"]),
        ("-1, 4", ["4, -1", r"-1 \text{ or } 4", "x = -1 or x = 4"], ["1, 4", "-1", "-4, 1"]),
        (r"1 \pm \sqrt{2}",
         [r"1+\sqrt{2}, 1-\sqrt{2}", r"1-\sqrt2, 1+\sqrt2", r"1 \pm \sqrt 2"],
         [r"1+\sqrt{2}", r"-1 \pm \sqrt{2}", r"1 \pm \sqrt{3}"]),
        (r"\{5\}", ["5", r"\{5\}"], ["6", r"\{5, 6\}"]),
        (r"\emptyset", [r"\varnothing", r"\emptyset", r"\{\}"], [r"\{0\}", "0"]),
    ],
    "intervals": [
        ("[2, 5)", ["[2,5)", r"\left[2, 5\right)", r"2 \le x < 5"], ["(2, 5)", "[2, 5]", "(2, 5]"]),
        (r"(-\infty, 3]",
         [r"(-\infty,3]", r"x \le 3", r"\left(-\infty, 3\right]"],
         [r"(-\infty, 3)", r"[3, \infty)", "x < 3"]),
        (r"(-\infty, -1) \cup (2, \infty)",
         [r"(2, \infty) \cup (-\infty, -1)", r"(-\infty,-1)\cup(2,\infty)"],
         ["(-1, 2)", r"(-\infty, -1] \cup [2, \infty)", r"(-\infty, 2) \cup (-1, \infty)"]),
        ("(0, 1)", ["(0,1)", r"\left(0, 1\right)"], ["[0, 1]", "(0, 2)", "(1, 0)"]),
        (r"[1, \infty)", [r"[1,\infty)", r"x \ge 1", r"[1, +\infty)"], [r"(1, \infty)", "x > 1", r"[0, \infty)"]),
        ("(-2, 2)", ["-2 < x < 2", "(-2,2)"], ["[-2, 2]", "(-2, 3)"]),
    ],
    "matrices": [
        (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
         [r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1 & 2\\ 3 & 4\end{pmatrix}"],
         [r"\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}", r"\begin{pmatrix} 1 & 2 \end{pmatrix}"]),
        (r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}",
         [r"\begin{pmatrix}1\\-2\end{pmatrix}", r"\begin{bmatrix} 1 \\ -2 \end{bmatrix}"],
         [r"\begin{pmatrix} -2 \\ 1 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"]),
        (r"\begin{pmatrix} \frac{1}{2} & 0 \\ 0 & 2 \end{pmatrix}",
         [r"\begin{pmatrix} 0.5 & 0 \\ 0 & 2 \end{pmatrix}", r"\begin{pmatrix} 1/2 & 0 \\ 0 & 2 \end{pmatrix}"],
         [r"\begin{pmatrix} 2 & 0 \\ 0 & \frac{1}{2} \end{pmatrix}"]),
        ("-2", [r"\begin{vmatrix} 1 & 2 \\ 3 & 4 \end{vmatrix}"], [r"\begin{vmatrix} 1 & 2 \\ 4 & 3 \end{vmatrix}"]),
    ],
    "expressions": [
        ("x^2 + 2x + 1", ["(x+1)^2", "1 + 2x + x^2", "x^{2}+2x+1"], ["x^2+1", "(x-1)^2", "x^2+2x"]),
        (r"\frac{x+1}{x-1}",
         [r"\frac{1+x}{x-1}", r"\frac{x^2+2x+1}{x^2-1}", "(x+1)/(x-1)"],
         [r"\frac{x-1}{x+1}", r"\frac{x+1}{1-x}"]),
        ("3x^2 - 12", ["3(x-2)(x+2)", "3(x^2-4)", "-12+3x^2"], ["3(x-2)^2", "3x^2+12", "x^2-4"]),
        (r"2\sin x \cos x", [r"\sin(2x)", r"\sin 2x", r"2\cos x\sin x"], [r"\sin x", r"\cos(2x)", r"2\sin x"]),
        ("a^2 - b^2", ["(a-b)(a+b)", "(a+b)(a-b)", "-b^2+a^2"], ["(a-b)^2", "a^2+b^2", "b^2-a^2"]),
        (r"\frac{n(n+1)}{2}",
         [r"\frac{n^2+n}{2}", r"\frac{1}{2}n(n+1)", r"\frac{n}{2}(n+1)"],
         [r"\frac{n(n-1)}{2}", "n(n+1)", "n^2"]),
        ("|x|", [r"\sqrt{x^2}", "|-x|", r"\left|x\right|"], ["x", "-x", "x^2"]),
        ("2^{n+1}", [r"2 \cdot 2^n", r"2^{n} \cdot 2", "2^{1+n}"], ["2^n", "2n+2", "4^n"]),
    ],
    "relations": [
        ("y = 2x + 1", ["y=1+2x", "y = 2x+1", "2x - y + 1 = 0", "2y = 4x + 2"], ["y = 2x - 1", "y = x + 1", "y = 2x"]),
        ("x = 5", ["5", "x=5", r"x = \frac{10}{2}"], ["x = 6", "6", "y = 5"]),
        ("x^2 + y^2 = 25", ["y^2 + x^2 = 25", "x^2 + y^2 - 25 = 0"], ["x^2 + y^2 = 5", "x^2 - y^2 = 25"]),
        ("x > 3", ["3 < x", "x>3", "x - 3 > 0"], [r"x \ge 3", "x < 3", "x > 4"]),
        (r"x \le -2", [r"-2 \ge x", r"x \leq -2"], ["x < -2", r"x \ge -2"]),
        ("k = 4", ["4", "k=4", "k = 4.0"], ["3", "k = -4"]),
    ],
    "complex": [
        ("3 + 4i", ["4i + 3", "3+4i", "3 + 4 i", "(1+2i)^2 + 6"], ["3 - 4i", "4 + 3i", "5"]),
        ("i", [r"\sqrt{-1}", "i", "-i^3"], ["-i", "1"]),
        ("5", ["|3+4i|", r"\sqrt{25}"], ["|3+3i|", r"\sqrt{24}"]),
    ],
    "integer functions": [
        (r"2\frac{1}{2}", [r"\frac52", "2.5", "5/2"], ["2", r"\frac{1}{2}", "2.25"]),
        ("10", [r"\binom{5}{2}", r"\dbinom{5}{3}", r"{5 \choose 2}"], [r"\binom{5}{1}", r"\binom{6}{2}"]),
        ("120", ["5!", r"5 \cdot 4 \cdot 3 \cdot 2", "120.0"], ["4!", "6!", "100"]),
        ("3", [r"\lfloor \pi \rfloor", r"\lceil 2.1 \rceil"], [r"\lceil \pi \rceil", r"\lfloor 2.9 \rfloor"]),
    ],
    "decimals": [
        (r"\frac{4}{5}", [r"\frac{4}{5}", r"\frac{8}{10}", "0.8", r"\dfrac{4}{5}"], [r"\frac{5}{4}", "0.08", "80"]),
        ("1.5", [r"\frac{3}{2}", "1.50", "3/2", r"1\frac{1}{2}"], ["1.05", r"\frac{2}{3}", "15"]),
        ("0.001", ["10^{-3}", r"\frac{1}{1000}", "1/1000", r"1 \times 10^{-3}"], ["0.01", "10^{-2}", "0.0011"]),
    ],
}

# Response templates: {ans} is the answer in LaTeX; {n} marks templates only used for plain numbers.
TEMPLATES = [
    r"Combining the cases, the answer is $\boxed{{ans}}$.",
    "<think>Let me compute step by step. First 2 + 2 = 4.</think>\nThe final answer is $\\boxed{{ans}}$",
    "We simplify and obtain\n\\[\n\\boxed{{ans}}\n\\]",
    "<think>The sum telescopes.</think><answer>${ans}$</answer>",
    "Therefore, the final answer is $\\boxed{{ans}}$. I hope it is correct.",
    "Checking again: first I got $\\boxed{7}$, which is wrong; the corrected result is $\\boxed{{ans}}$.",
    "**Final Answer**\n$\\boxed{{ans}}$",
    "Adding the 3 parts and the 2 remaining pieces gives {n}",
    "Answer: {n}",
]

NUMERIC_SEED = 20250511


def numeric_cases(seed: int) -> list[tuple[str, list[str], list[str]]]:
    """Random integer, fraction and decimal references with equal and unequal variants."""
    rng = random.Random(seed)
    cases = []
    for _ in range(12):
        n = rng.randint(1000, 999999)
        cases.append((str(n), [f"{n:,}", str(n), f"{n}.0"], [str(n + 1), f"{n // 10:,}", str(n * 10)]))
    for _ in range(12):
        p, q = rng.randint(1, 40), rng.randint(2, 40)
        while p % q == 0:
            p += 1
        cases.append((rf"\frac{{{p}}}{{{q}}}", [rf"\frac{{{2 * p}}}{{{2 * q}}}", f"{p}/{q}", f"{p / q:.9f}"],
                      [rf"\frac{{{q}}}{{{p}}}", f"{p + 1}/{q}", f"{p / q + 0.013:.3f}"]))
    for _ in range(10):
        n = rng.randint(-500, 500)
        cases.append((str(n), [str(n), f"{n}.00"], [str(-n - 1), str(n + 2)]))
    return cases


def word_problem_rows(seed: int) -> list[tuple[str, str, bool]]:
    """GSM8K-style responses: a worked chain with distractor numbers, then the answer in a plain format."""
    rng = random.Random(seed + 1)
    rows = []
    for i in range(40):
        a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(1, 99)
        total = a * b + c
        answer = total if i % 2 == 0 else total + rng.choice((-10, -1, 1, 2, 100))
        chain = f"She buys {a} boxes with {b} pens each, so {a} * {b} = {a * b} pens. Adding {c} more gives "
        ending = (f"{answer:,} pens.\n#### {answer}", f"{answer} pens in total. The answer is {answer}.",
                  f"{answer}. So the final answer is {answer:,}.", f"{answer} pens.")[i % 4]
        rows.append((str(total), chain + ending, answer == total))
    return rows


CORPUS = Path(__file__).resolve().parent / "data" / "math_pairs.jsonl"
OUTSIDE_CORPUS = Path(__file__).resolve().parent / "data" / "math_verify_tests.jsonl"
WARMUP = [(f"so \\boxed{{{i}/7}}", f"\\frac{{{i}}}{{7}}") for i in range(1, 25)]


def build_corpus() -> list[dict]:
    """Every case answer wrapped in a response template (cycled deterministically)."""
    rows: list[dict] = []
    groups = [(name, case) for name, cases in CASES.items() for case in cases]
    groups += [("random numbers", case) for case in numeric_cases(NUMERIC_SEED)]
    for category, (reference, equal, unequal) in groups:
        for label, answers in ((True, equal), (False, unequal)):
            for answer in answers:
                template = TEMPLATES[len(rows) % len(TEMPLATES)]
                if "{n}" in template and not _is_plain_number(answer):
                    template = TEMPLATES[0]
                response = template.replace("{n}" if "{n}" in template else "{ans}", answer)
                rows.append({"id": len(rows), "category": category, "reference": reference, "response": response,
                             "label": label})
    for reference, response, label in word_problem_rows(NUMERIC_SEED):
        rows.append({"id": len(rows), "category": "word problems", "reference": reference, "response": response,
                     "label": label})
    return rows


def _is_plain_number(text: str) -> bool:
    return text.replace("-", "", 1).replace(".", "", 1).isdigit()


def load_corpus(path: Path = CORPUS) -> list[dict]:
    """A committed corpus (one JSON object per line); rows without a category are grouped by source."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row.setdefault("category", row.get("source", "").split("::")[-1])
    return rows


# -- math-verify side (module-level functions so pool workers can import them) -------------------
# math-verify's own tests parse both sides with these targets (tests/test_all.py::compare_strings).
_MV_CACHE: dict[tuple[str, tuple[str, ...]], object] = {}
_DEFAULT_TYPES = ("latex", "expr")


def _mv_parse(text: str, cached: bool, match_types: tuple[str, ...]) -> object:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    key = (text, match_types)
    if cached and key in _MV_CACHE:
        return _MV_CACHE[key]
    targets = {"latex": LatexExtractionConfig(boxed_match_priority=0), "expr": ExprExtractionConfig()}
    parsed = parse(text, [targets[t] for t in match_types])
    if cached:
        if len(_MV_CACHE) >= CACHE_SIZE:
            _MV_CACHE.pop(next(iter(_MV_CACHE)))
        _MV_CACHE[key] = parsed
    return parsed


def _mv_verify(item: tuple[str, str, bool, tuple[str, ...]]) -> bool:
    from math_verify import verify

    reference, response, cached, match_types = item
    return bool(verify(_mv_parse(reference, cached, match_types), _mv_parse(response, cached, match_types)))


def _mv_init() -> None:
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every timeout and parse failure


CACHE_SIZE = 4096  # thinkrl's parse cache (score.parse_answer); math-verify gets the same in the warm runs


def run_math_verify(items: list[tuple[str, str, tuple[str, ...]]], workers: int) -> tuple[list[bool], float, float]:
    """Warm pooled pass (parse cache on both sides): verdicts, seconds for the pass, seconds to start the pool.

    ``items``: (reference, response, extraction targets) per pair.
    """
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_mv_init) as pool:
        pool.map(_mv_verify, [(r, a, True, _DEFAULT_TYPES) for a, r in WARMUP], chunksize=1)
        ready = time.perf_counter()
        verdicts = list(pool.imap(_mv_verify, [(r, a, True, t) for r, a, t in items], chunksize=16))
        elapsed = time.perf_counter() - ready
    return verdicts, elapsed, ready - start


def run_thinkrl(pairs: list[tuple[str, str]], workers: int) -> tuple[list, float, float]:
    """Warm pooled pass (thinkrl's own parse cache): verdicts, seconds for the pass, seconds to start the pool."""
    start = time.perf_counter()
    with MathVerifier(num_workers=workers, timeout_s=5.0) as verifier:
        verifier.verify_batch(WARMUP)
        ready = time.perf_counter()
        verdicts = verifier.verify_batch([(response, reference) for reference, response in pairs])
        elapsed = time.perf_counter() - ready
    return verdicts, elapsed, ready - start


def cold_in_process(pairs: list[tuple[str, str]], mv_items: list[tuple[str, str, tuple[str, ...]]]) -> dict[str, float]:
    """Answers/s of both in this process with no cache at all (thinkrl's is cleared before every pair)."""
    from thinkrl.rewards.math.score import parse_answer

    _mv_init()
    start = time.perf_counter()
    for reference, response in pairs:
        parse_answer.cache_clear()
        score_answer(response, reference)
    ours = len(pairs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for reference, response, match_types in mv_items:
        _mv_verify((reference, response, False, match_types))
    theirs = len(pairs) / (time.perf_counter() - start)
    return {"thinkrl_cold_per_s": round(ours, 1), "math_verify_cold_per_s": round(theirs, 1),
            "cold_speedup": round(ours / theirs, 2)}


def error_counts(verdicts: list[bool], labels: list[bool]) -> dict[str, int]:
    """False positives (accepted, label unequal) and false negatives (rejected, label equal)."""
    return {"false_positives": sum(v and not lb for v, lb in zip(verdicts, labels, strict=True)),
            "false_negatives": sum(lb and not v for v, lb in zip(verdicts, labels, strict=True))}


def write_markdown(path: Path, rows: list[dict], ours: list, theirs: list[bool], result: dict) -> None:
    """Results, agreement by category and every pair that either verifier gets wrong against its label."""
    lines = [
        f"# thinkrl vs math-verify on `{result['corpus']}` (generated)", "",
        f"{len(rows)} pairs. Command: `thinkrl bench math-verify --corpus "
        f"{'own' if result['corpus'] == CORPUS.name else 'outside'} --workers {result['workers']} "
        f"--markdown {path}`.", "",
        "```json", json.dumps(result, indent=2), "```", "",
        "## By category", "",
        "| category | pairs | agreement % | thinkrl = label % | math-verify = label % |",
        "|---|---|---|---|---|",
    ]
    for category in dict.fromkeys(r["category"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["category"] == category]
        pct = lambda hits: f"{100 * sum(hits) / len(idx):.1f}"  # noqa: B023, E731 (used at once)
        lines.append(f"| {category} | {len(idx)} | {pct(ours[i].correct == theirs[i] for i in idx)} | "
                     f"{pct(ours[i].correct == rows[i]['label'] for i in idx)} | "
                     f"{pct(theirs[i] == rows[i]['label'] for i in idx)} |")
    lines += ["", "## Pairs either verifier gets wrong against the label", "",
              "| id | category | reference | thinkrl extracted | thinkrl | math-verify | label |",
              "|---|---|---|---|---|---|---|"]
    for row, mine, other in zip(rows, ours, theirs, strict=True):
        if mine.correct != row["label"] or other != row["label"]:
            cells = [str(row["id"]), row["category"], _md(row["reference"][-90:]),
                     _md((mine.extracted or row["response"][-60:])[:90]), mine.reason, str(other), str(row["label"])]
            lines.append("| " + " | ".join(cells) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _md(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("\n", " ").replace("`", "'") + "`"


CORPORA = {"outside": OUTSIDE_CORPUS, "own": CORPUS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="outside",
                        help="outside: math-verify's labelled test pairs (not written here); own: ours")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for each verifier")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the disagreement list here")
    parser.add_argument("--write-corpus", action="store_true", help="rebuild benchmarks/data/math_pairs.jsonl")
    args = parser.parse_args()
    check_at_least(parser, args, workers=1, repeats=1)
    if args.write_corpus:
        rows = build_corpus()
        CORPUS.parent.mkdir(parents=True, exist_ok=True)
        CORPUS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(json.dumps({"wrote": str(CORPUS), "pairs": len(rows)}))
        return
    try:
        import math_verify  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs math-verify: pip install 'math-verify[antlr4_13_2]'") from None
    rows = load_corpus(CORPORA[args.corpus])
    pairs = [(r["reference"], r["response"]) for r in rows]
    # math-verify finds LaTeX only between delimiters: our corpus's bare references get them (its tests' have them)
    mv_items = [(f"${r['reference']}$" if args.corpus == "own" else r["reference"], r["response"],
                 tuple(r.get("match_types", _DEFAULT_TYPES))) for r in rows]
    ours_s, theirs_s, ours_start, theirs_start = [], [], [], []
    for _ in range(args.repeats):
        ours, seconds, startup = run_thinkrl(pairs, args.workers)
        ours_s.append(seconds)
        ours_start.append(startup)
        theirs, seconds, startup = run_math_verify(mv_items, args.workers)
        theirs_s.append(seconds)
        theirs_start.append(startup)
    ours_ok = [o.correct for o in ours]
    labels = [r["label"] for r in rows]
    agree = sum(o == t for o, t in zip(ours_ok, theirs, strict=True))
    ours_rate = len(pairs) / statistics.median(ours_s)
    theirs_rate = len(pairs) / statistics.median(theirs_s)
    accuracy = lambda verdicts: round(100 * sum(v == lb for v, lb in zip(verdicts, labels, strict=True))  # noqa: E731
                                      / len(pairs), 2)
    result = {
        "bench": "math-verify", "corpus": CORPORA[args.corpus].name, "pairs": len(pairs),
        "equal_pairs": sum(labels), "workers": args.workers, "repeats": args.repeats,
        "thinkrl_answers_per_s": round(ours_rate, 1), "math_verify_answers_per_s": round(theirs_rate, 1),
        "speedup": round(ours_rate / theirs_rate, 2),
        **cold_in_process(pairs, mv_items),
        "thinkrl_label_accuracy_pct": accuracy(ours_ok),
        "thinkrl": error_counts(ours_ok, labels),
        "math_verify_label_accuracy_pct": accuracy(theirs),
        "math_verify": error_counts(theirs, labels),
        "agreement_with_math_verify_pct": round(100 * agree / len(pairs), 2),
        "thinkrl_pool_start_s": round(statistics.median(ours_start), 2),
        "math_verify_pool_start_s": round(statistics.median(theirs_start), 2),
        "python": platform.python_version(), "cpus": multiprocessing.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the machine may be shared: timings are noisy
    }
    if args.markdown:
        write_markdown(args.markdown, rows, ours, theirs, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
