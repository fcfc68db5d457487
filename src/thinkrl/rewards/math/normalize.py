r"""String normalisation of an extracted answer before it is parsed.

`normalize_answer` rewrites the many ways of writing the same thing into one:

- math delimiters (``$``, ``\(``, ``\[``) and sizing/spacing commands (``\left``, ``\right``,
  ``\big``, ``\displaystyle``, ``\,``, ``\!``, ``\quad``, ``~``) are removed;
- ``\dfrac``/``\tfrac``/``\cfrac`` become ``\frac``, ``\dbinom``/``\tbinom`` become ``\binom``;
- degrees (``^\circ``, ``^{\circ}``, ``°``, ``\degree``, the words "degrees") become ``\degree``;
  percent (``\%``, ``%``, "percent") becomes ``\%``;
- ``\text{}``, ``\mathrm{}``, ``\textbf{}``, ``\mbox{}``, ``\operatorname{}`` ... are unwrapped; a
  wrapped unit (``\text{ cm}^2``, ``\mathrm{kg}``) is dropped, as are unit words after a number
  (``12 inches``, ``5 square units``, ``\$``, "dollars");
- thousands separators are removed from a lone number (``1,234,567``, ``1{,}000``, ``1\,000``,
  ``1 000``);
- unicode maths (``−``, ``×``, ``÷``, ``π``, ``√``, ``∞``, ``≤``, ``≥``, ``≠``) becomes LaTeX.

`text_key` is the comparison key of an answer that is not mathematics (case, spaces, braces and
surrounding parentheses of a letter choice are ignored).
"""

from __future__ import annotations

import re

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ",
    "\u00f7": r"\div ", "\u03c0": r"\pi ", "\u221a": r"\sqrt", "\u221e": r"\infty ", "\u2264": r"\le ",
    "\u2265": r"\ge ", "\u2260": r"\ne ", "\u00b0": r"\degree ", "\u222a": r"\cup ", "\u2208": r"\in ",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2248": r"\approx ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_WRAPPERS = ("text", "textbf", "textit", "textrm", "textnormal", "mathrm", "mathbf", "mathit", "mathsf",
             "mbox", "operatorname", "boldsymbol", "bm", "mathnormal", "hbox")
_WRAPPER_RE = re.compile(r"\\(" + "|".join(_WRAPPERS) + r")\s*\{")
_UNIT_POWER_RE = re.compile(r"\s*\^\s*\{?[23]\}?")  # the ^2 / ^3 after a wrapped unit

_UNITS = (
    "cm", "mm", "km", "m", "meter", "meters", "metre", "metres", "centimeter", "centimeters", "centimetre",
    "centimetres", "millimeter", "millimeters", "kilometer", "kilometers", "inch", "inches", "in", "ft", "foot",
    "feet", "yd", "yard", "yards", "mile", "miles", "mi", "s", "sec", "second", "seconds", "min", "mins", "minute",
    "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days", "week", "weeks", "month", "months", "year",
    "years", "yr", "yrs", "g", "gram", "grams", "kg", "kilogram", "kilograms", "mg", "lb", "lbs", "pound",
    "pounds", "oz", "ounce", "ounces", "l", "L", "liter", "liters", "litre", "litres", "ml", "mL", "gallon",
    "gallons", "dollar", "dollars", "cent", "cents", "unit", "units", "sq", "square", "cubic", "mph", "kph",
    "km/h", "m/s", "cm^2", "cm^3", "m^2", "m^3", "sqft", "sq.ft",
)
_UNIT_SET = frozenset(u.lower() for u in _UNITS)
# Unit words removed anywhere after a number (multi-letter only: single letters could be variables).
_UNIT_WORDS = sorted((u for u in _UNITS if len(u) > 2 and u.isalpha()), key=len, reverse=True)
_UNIT_RE = re.compile(
    r"(?<![\\A-Za-z])(?:" + "|".join(_UNIT_WORDS) + r")(?:\s*\^\s*\{?[23]\}?)?(?![A-Za-z])"
)

_SPACING_RE = re.compile(
    r"\\\\|\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![A-Za-z])(?:\.(?!\d))?"
    r"|\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits|thinspace|medspace|"
    r"thickspace|enspace|negthinspace|hfill)(?![A-Za-z])|\\q?quad"  # "\quadx_2" (sloppy) is spacing too
    r"|\\[,;:! ]|~"
)
# The spaces before a degree or percent sign go with it. "(?<!\s)" starts that match only where a run of spaces starts:
# tried inside the run too, "\s*" would rescan the rest of the run from each of its positions (quadratic time on a
# long run, such as the one 8,000 "$" become). The match is the same: one at a run's start covers the whole run.
_DEGREE_RE = re.compile(
    r"(?<!\s)\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|\^\s*\{\s*\\degree\s*\}|"
    r"(?<![A-Za-z\\])degrees?(?![A-Za-z]))"
)
_PERCENT_RE = re.compile(r"(?<!\s)\s*(?:\\?%|(?<![A-Za-z\\])percent(?:age)?(?![A-Za-z]))")
_THOUSANDS_RE = re.compile(r"-?[1-9]\d{0,2}(?:(?:,|\{,\}| )\d{3})+(?:\.\d+)?")  # 0,111 is a decimal comma
# "12 apples", "5 square units": words after a final number (unambiguous, so matching stays linear)
_TRAILING_WORDS_RE = re.compile(r"(.*\d\}?)\s+[a-z]+(?:\s+[a-z]+){0,2}")
_KEEP_WORDS = frozenset({"and", "or", "i", "e", "x", "y", "z", "n", "k", "pi"})
_MAX_LAYERS = 8
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _unwrap(text: str) -> str:
    r"""Replace ``\text{...}``-like wrappers by their content; drop wrapped units (and a following ^2/^3)."""
    out: list[str] = []
    pos = 0
    while True:
        match = _WRAPPER_RE.search(text, pos)
        if match is None:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:match.start()])
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        content = text[match.end():i - 1] if depth == 0 else text[match.end():]
        if content.strip().lower().replace("\\", "") in _UNIT_SET:
            tail = _UNIT_POWER_RE.match(text, i)  # at i, not on text[i:]: no copy of the rest per unit
            i = tail.end() if tail else i
            content = " "
        out.append(content)
        pos = i


def strip_delimiters(text: str) -> str:
    r"""Remove surrounding math delimiters (``$..$``, ``$$..$$``, ``\(..\)``, ``\[..\]``), bold and a final dot.

    At most `_MAX_LAYERS` layers are removed, on indices, so megabyte-long input costs microseconds.
    """
    start, end = 0, len(text)
    changed = True
    for _ in range(_MAX_LAYERS):
        if not changed:
            break
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        changed = False
        for left, right in (*_DELIMITERS, ("**", "**")):
            if end - start >= len(left) + len(right) + (1 if left == "**" else 0) and text.startswith(
                    left, start, end) and text.endswith(right, start, end):
                start, end, changed = start + len(left), end - len(right), True
                break
        if not changed and end - start > 1 and text[end - 1] == ".":
            end, changed = end - 1, True
    return text[start:end]


def normalize_answer(text: str) -> str:
    """Canonical LaTeX-ish string of an answer (see the module docstring for every rule)."""
    text = strip_delimiters(text)
    text = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], text)
    text = text.replace("\\$", " ").replace("$", " ")
    text = _unwrap(text)
    text = re.sub(r"(?<=\d),\s*\\[!,]\s*(?=\d)", ",", text)  # 12,\!000 is a thousands separator
    text = re.sub(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d)", "{,}", text)  # 14 {, }916 is 14{,}916
    if "\\begin" not in text:  # \\left( written with a doubled backslash (escaped twice) is \left(
        text = re.sub(r"\\\\(?=[A-Za-z])", r"\\", text)
    text = _SPACING_RE.sub(lambda m: m.group() if m.group() == "\\\\" else " ", text)
    text = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", text)
    text = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", text)
    text = _DEGREE_RE.sub(r"\\degree ", text)
    text = _PERCENT_RE.sub(r"\\% ", text)
    text = _UNIT_RE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = strip_delimiters(text).rstrip(",;:").strip()
    words = _TRAILING_WORDS_RE.fullmatch(text)
    if words and not set(text[words.end(1):].split()) & _KEEP_WORDS:
        text = words.group(1)
    if _THOUSANDS_RE.fullmatch(text):
        text = re.sub(r",|\{,\}| ", "", text)
    return text


def text_key(text: str) -> str:
    """Comparison key for a non-mathematical answer: lower case, no spaces, braces, backslashes or dots."""
    key = re.sub(r"[\s{}\\$.]|\btext\b|\bmathrm\b", "", normalize_answer(text).lower())
    if re.fullmatch(r"\([a-z]\)", key):
        key = key[1]
    return key
