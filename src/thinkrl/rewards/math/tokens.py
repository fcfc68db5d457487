"""Tokenizer of LaTeX / ASCII answers (a fixed alphabet: anything else is `NotMath`).

Tokens are ``(kind, text)`` pairs; kinds: ``num`` (digits, optional decimal point), ``cmd``
(``\\name`` or ``\\`` + one character), ``word`` (one letter), ``op`` (operators and brackets),
``env`` (``\\begin{name}`` / ``\\end{name}``) and a final ``end``. Letter runs become one command
when they name a function or constant (``sqrt``, ``sin``, ``pi``, ``infty``), a separator for
``and``/``or``, and single-letter variables otherwise (``xy`` is ``x*y``); longer words are not
maths and raise `NotMath` (except runs of capitals, which name points: ``ABCD``).
"""

from __future__ import annotations

import re

import sympy

from thinkrl.rewards.math.values import NotMath

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)|(?P<env>\\(?:begin|end)\s*\{[A-Za-z*]+\})|(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<cmd>\\(?:[A-Za-z]+|.))|(?P<word>[A-Za-z]+)|(?P<op>\*\*|<=|>=|!=|==|=>|[-+*/^_()\[\]{}=<>!,;:|&'])"
)
FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
    "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "ln": sympy.log,
    "log": sympy.log, "sqrt": sympy.sqrt,
}
CONSTANTS = {"pi": sympy.pi, "infty": sympy.oo, "inf": sympy.oo, "infinity": sympy.oo, "oo": sympy.oo}
GREEK = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
})
RELATIONS = {
    "=": "=", "==": "=", "\\approx": "~", "\\equiv": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=",
    "!=": "!=", "\\ne": "!=", "\\neq": "!=", "\\le": "<=", "\\leq": "<=", "\\leqslant": "<=",
    "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=", "\\lt": "<", "\\gt": ">", "\\in": "in",
}
_ALIASES = {"\\langle": "(", "\\rangle": ")", "\\lbrack": "[", "\\rbrack": "]", "\\lvert": "|",
            "\\rvert": "|", "\\vert": "|", "\\mid": "|", "\\lbrace": "\\{", "\\rbrace": "\\}", "\\colon": ":"}
_TEXT_WORDS = frozenset({"no", "yes", "odd", "not", "all", "none", "the", "is", "are", "of", "to", "it"})


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``(kind, text)`` tokens; kinds: num, cmd, word, op, env, end. Raises `NotMath`."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise NotMath(f"unexpected character {text[pos]!r}")
        pos = match.end()
        kind, value = match.lastgroup or "", match.group()
        if kind == "ws":
            continue
        if kind == "cmd":
            value = _ALIASES.get(value, value)
            kind = "op" if value in ("(", ")", "[", "]", "|", ":") else kind
        if kind == "env":
            value = re.sub(r"\s+", "", value)
        if kind == "word":
            tokens.extend(_split_word(value))
            continue
        tokens.append((kind, value))
    tokens.append(("end", ""))
    return tokens


def _split_word(word: str) -> list[tuple[str, str]]:
    """A letter run: a known function/constant name, a separator word, or single-letter variables."""
    lower = word.lower()
    if word in FUNCTIONS or lower in CONSTANTS:
        return [("cmd", "\\" + (word if word in FUNCTIONS else lower))]
    if lower in ("and", "or"):
        return [("op", ",")]
    if word.isupper() and len(word) <= 8:
        return [("word", letter) for letter in word]  # point names: ABCD, S_{MBCN}
    if lower in _TEXT_WORDS or len(word) > 3:
        raise NotMath(f"word {word!r}")
    return [("word", letter) for letter in word]
