r"""thinkrl's *own* labelled corpus for the math verifier (``benchmarks/data/math_pairs.jsonl``).

Hand-written references with answers equal and unequal to them, random numbers and GSM8K-style word
problems, each wrapped in a response template. thinkrl was developed against these cases, so they measure
little; the outside corpus (``math_verify_corpus.py``) is the one results quote. Rebuild the file with
``python benchmarks/bench_math_verify.py --write-corpus``.
"""

from __future__ import annotations

import random

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
