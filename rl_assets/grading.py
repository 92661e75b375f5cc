"""Deterministic answer grader for the financial-QA RL environment.

Standard library only. The entry points are:

* ``extract_answer(text)``: pulls the final answer string out of a completion.
* ``parse_number(text)`` / ``parse_answer(text)``: turn an answer string into
  numbers (``ParsedNumber``).
* ``grade(answer, gold, gold_unit, gold_scale, rel_tol, abs_tol)``: gives a
  ``Grade(correct, predicted, reason)``.

Answer extraction (``extract_answer``)
--------------------------------------
1. If the text has a ``\\boxed{...}``, the content of the LAST closed one is
   returned. Nested braces are allowed and ``\\{``/``\\}`` are not counted.
   A ``\\boxed{`` that never closes is skipped.
2. Otherwise the text after the LAST ``FINAL ANSWER:`` (case-insensitive,
   markdown ``**``/``_`` around it allowed) up to the end of that line. If that
   line is empty, the next non-empty line is used. Surrounding whitespace and
   ``*`` are removed.
3. Otherwise ``None``.

Number parsing (``parse_number`` / ``parse_answer``)
----------------------------------------------------
* Thousands separators: ``1,234`` and ``1,234,567.5`` are one number (groups of
  exactly three digits with no space after the comma). ``1, 234`` and ``[1,2]``
  are two numbers.
* Negatives: ``-5``, ``\u22125`` (unicode minus), ``-$5``, ``$-5`` and
  accounting parentheses ``(1,234)``, ``$(1,234)``, ``($1,234)``. A ``-``
  glued to a preceding word or digit is a hyphen, not a sign
  (``2018-2019`` gives 2018 and 2019).
* Currency markers ``$``, ``US$``, ``USD``, ``EUR``, ``GBP``, ``\u20ac``,
  ``\u00a3`` and ``\u00a5`` are ignored.
* Percent: ``%``, ``percent``, ``per cent``, ``pct``, ``pp``,
  ``percentage point(s)`` set ``is_percent``. The value stays in percent
  points: ``3.4%`` has value 3.4.
* Scale words right after the number: ``thousand``/``k`` (1e3),
  ``million``/``mn``/``mm``/``m`` (1e6), ``billion``/``bn``/``b`` (1e9) and
  ``trillion``/``tn``/``t`` (1e12), plurals and any case.
  ``value = bare * scale``; ``bare`` is the number as written, with its sign.
* Scientific notation (``1e3``) and a leading dot (``.5``) are accepted.
  Other trailing words (``8.1 years``) and leading words (``approximately``)
  are ignored.
* A number glued to a preceding letter, digit or dot is not read (``Q4``,
  ``FY2019``).
* Years used as labels are skipped: a plain 4-digit integer followed by
  ``:`` (``2019: 5.0; 2018: 4.1`` gives 5.0 and 4.1). A year anywhere else
  counts as a number.
* Non-finite results (``1e999``) are dropped. Dashes, ``n/a`` and empty
  strings contain no number.
* Light LaTeX clean-up first: ``\\%``, ``\\$``, ``\\text{..}``/``\\mathrm{..}``,
  ``{,}``, ``\\,`` between digit groups, ``\\left(``/``\\right)``.
* ``parse_answer`` returns every number, in order. ``parse_number`` returns
  the FIRST one, or ``None``.

Grading rules (``grade``)
-------------------------
* ``answer`` is normally the ``submit_answer`` string. If it contains a
  ``\\boxed{}`` or ``FINAL ANSWER:``, ``extract_answer`` is applied to it first.
* Tolerance: a predicted value ``p`` matches a target ``t`` when
  ``|p - t| <= max(rel_tol * |t|, abs_tol)``. The defaults are rel_tol=0.01
  (1% relative) and abs_tol=1e-6, which only matters for a gold of zero or
  near zero.
* Candidates for one parsed number: ``{value, bare}``, i.e. the value with its
  scale word applied and the number as written. A ``%`` sign changes nothing
  (``24.1%`` is 24.1). So a number gold of 24.1 taken from a cell ``24.1%``
  accepts ``24.1%`` and ``24.1``.
* ``gold_unit="number"``: only the candidates themselves.
* ``gold_unit="percent"`` (gold in percent points, 12.3 means 12.3%) and
  ``gold_unit="ratio"`` (gold is a fraction, e.g. FinQA's 0.9379 for 93.8%):
  every candidate ``c`` is also tried as ``c * 100`` and ``c / 100``. So percent
  gold 12.3 accepts ``12.3%``, ``12.3`` and ``0.123``, and ratio gold 0.9379
  accepts ``0.9379``, ``93.8%`` and ``93.79``.
* Targets: ``{gold}``, plus ``gold * multiplier`` when ``gold_scale`` is one of
  thousand/million/billion/trillion (any case, plural allowed). ``percent``,
  ``units``, ``none``, ``''`` and ``None`` add nothing. Any other ``gold_scale`` gives
  ``reason="invalid_gold_scale"``. Example: gold -12.6 with scale ``million``
  accepts ``-12.6``, ``-12.6 million`` and ``-12,600,000``.
* Sign is strict. A gold of -12.6 does not accept ``12.6 decrease`` or
  ``12.6``. When only the sign is wrong, the reason is ``wrong_sign``.
  ``(12.6)`` is negative and does match.
* One gold value: the LAST number in the answer is graded (the others are
  ignored).
* n > 1 gold values: the answer must contain exactly n numbers, or else
  ``reason="wrong_count"``. They are matched in order first
  (``reason="match"``). If that fails, any one-to-one assignment of answer
  numbers to gold values is accepted (``reason="match_permutation"``).
* Other reasons: ``no_answer`` (``None``, empty or whitespace-only answer),
  ``unparsable`` (no number in the answer), ``wrong_value``,
  ``invalid_gold`` (gold is empty, non-numeric, NaN or infinite) and
  ``invalid_gold_unit``.
* ``grade`` never raises on any string input. ``predicted`` holds the parsed
  ``value`` of each graded number (only the last one for a single gold), or
  ``None`` when nothing was parsed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "Grade",
    "ParsedNumber",
    "extract_answer",
    "grade",
    "parse_answer",
    "parse_number",
]

# --------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------

_BOXED = "\\boxed{"
_FINAL_ANSWER_RE = re.compile(r"final[ \t]+answer[*_ \t]*:", re.IGNORECASE)


def _boxed_content(text: str, start: int) -> str | None:
    """Content of the box whose '{' ends at ``start``; None if it never closes."""
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip escaped char such as \{ or \}
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def extract_answer(text: str) -> str | None:
    """Answer string from a completion: last \\boxed{...} (handle nested braces),
    else text after the last 'FINAL ANSWER:' (case-insensitive, up to end of
    line), else None."""
    if not isinstance(text, str) or not text:
        return None

    starts = []
    pos = text.find(_BOXED)
    while pos != -1:
        starts.append(pos + len(_BOXED))
        pos = text.find(_BOXED, pos + 1)
    for start in reversed(starts):
        content = _boxed_content(text, start)
        if content is not None:
            return content.strip()

    matches = list(_FINAL_ANSWER_RE.finditer(text))
    if matches:
        rest = text[matches[-1].end():]
        for line in rest.split("\n"):
            line = line.strip().strip("*").strip()
            if line:
                return line
        return ""
    return None


# --------------------------------------------------------------------------
# Number parsing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedNumber:
    value: float  # numeric value with scale word applied ('$1.2 billion' -> 1.2e9)
    bare: float  # the number as written, without scale word (1.2)
    is_percent: bool  # written with % / 'percent' / 'pct'
    scale: float  # 1, 1e3, 1e6, 1e9, 1e12


_SCALE_WORDS = {
    "thousand": 1e3, "thousands": 1e3, "k": 1e3,
    "million": 1e6, "millions": 1e6, "mn": 1e6, "mm": 1e6, "m": 1e6,
    "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9,
    "trillion": 1e12, "trillions": 1e12, "tn": 1e12, "t": 1e12,
}

_MINUS_CHARS = "-\u2212"

_NUMBER_RE = re.compile(
    r"""
    (?<![\w.])                                   # not glued to a word/number
    (?P<open>\(\s*)?
    (?P<sign1>[-+\u2212]\s*)?
    (?P<cur>(?:US\$|USD|EUR|GBP|\$|€|£|¥)\s*)?
    (?P<open2>\(\s*)?
    (?P<sign2>[-+\u2212]\s*)?
    (?P<num>
        \d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?       # 1,234,567.89
      | \d+(?:\.\d+)?                            # 1234.5
      | \.\d+                                    # .5
    )
    (?P<exp>[eE][-+]?\d+)?
    (?:\s*(?P<scale>thousands?|millions?|billions?|trillions?
                   |mm|mn|bn|tn|k|m|b|t)\b)?
    (?:\s*(?P<pct>%|percentage\s+points?\b|percent\b|per\s?cent\b|pct\b|pp\b))?
    (?P<close>\s*\))?
    """,
    re.IGNORECASE | re.VERBOSE,
)

_YEAR_LABEL_RE = re.compile(r"\s*:")

_LATEX_SUBS = [
    (re.compile(r"\\(?:text|mathrm|textbf|mathbf|textrm|mbox)\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\left\s*([()\[\]])"), r"\1"),
    (re.compile(r"\\right\s*([()\[\]])"), r"\1"),
    (re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))"), ","),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$"), "$"),
    (re.compile(r"\\[,;:! ]"), " "),
]

_SPACE_CHARS = {"\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " "}


def _clean(text: str) -> str:
    for bad, good in _SPACE_CHARS.items():
        text = text.replace(bad, good)
    for pattern, repl in _LATEX_SUBS:
        text = pattern.sub(repl, text)
    return text


def parse_answer(text: str) -> list[ParsedNumber]:
    """All numbers in an answer, in order (see the module docstring for rules)."""
    if not isinstance(text, str) or not text:
        return []
    text = _clean(text)
    out: list[ParsedNumber] = []
    for m in _NUMBER_RE.finditer(text):
        num = m.group("num")
        plain = not (m.group("sign1") or m.group("sign2") or m.group("cur")
                     or m.group("exp") or m.group("scale") or m.group("pct")
                     or m.group("open") or m.group("open2"))
        if plain and len(num) == 4 and num.isdigit() and _YEAR_LABEL_RE.match(text, m.end()):
            continue  # '2019: 5.0' -> the year is a label

        try:
            bare = float(num.replace(",", "") + (m.group("exp") or ""))
        except ValueError:  # pragma: no cover - the regex only yields valid floats
            continue
        signs = (m.group("sign1") or "") + (m.group("sign2") or "")
        has_minus = any(ch in _MINUS_CHARS for ch in signs)
        in_parens = bool((m.group("open") or m.group("open2")) and m.group("close"))
        if has_minus or in_parens:  # '(-5)' is still just negative
            bare = -bare

        scale_word = (m.group("scale") or "").lower()
        scale = _SCALE_WORDS.get(scale_word, 1.0)
        value = bare * scale
        if not (math.isfinite(bare) and math.isfinite(value)):
            continue
        out.append(ParsedNumber(value=value, bare=bare,
                                is_percent=m.group("pct") is not None, scale=scale))
    return out


def parse_number(text: str) -> ParsedNumber | None:
    """Parse one number (the first one in ``text``); None when there is none.

    Examples: '$61,307', '$ 40678', '(1,234)' -> -1234, '-3.4%', '12.5 percent',
    '8.1 years' -> 8.1, '1.2 million', '$3.5bn', 'USD 1,000', '\u22125', '1e3', '.5',
    'approximately 93.8%'. '\u2014', '-', '' and 'n/a' give None.
    """
    numbers = parse_answer(text)
    return numbers[0] if numbers else None


# --------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    correct: bool
    predicted: list[float] | None  # parsed values used
    reason: str  # 'match', 'match_permutation', 'no_answer', 'unparsable', ...


_GOLD_UNITS = ("number", "percent", "ratio")
_GOLD_SCALES = {
    "": None, "none": None, "percent": None, "units": None,
    "thousand": 1e3, "thousands": 1e3,
    "million": 1e6, "millions": 1e6,
    "billion": 1e9, "billions": 1e9,
    "trillion": 1e12, "trillions": 1e12,
}


def _close(p: float, t: float, rel_tol: float, abs_tol: float) -> bool:
    return abs(p - t) <= max(rel_tol * abs(t), abs_tol)


def _candidates(p: ParsedNumber, gold_unit: str) -> list[float]:
    base = [p.value] if p.value == p.bare else [p.value, p.bare]
    if gold_unit == "number":
        return base
    out = []
    for c in base:
        out.extend((c, c * 100.0, c / 100.0))
    return out


def _matches(p: ParsedNumber, targets: list[float], gold_unit: str,
             rel_tol: float, abs_tol: float) -> bool:
    return any(_close(c, t, rel_tol, abs_tol)
               for c in _candidates(p, gold_unit) for t in targets)


def _negated(p: ParsedNumber) -> ParsedNumber:
    return ParsedNumber(-p.value, -p.bare, p.is_percent, p.scale)


def _has_perfect_matching(ok: list[list[bool]]) -> bool:
    """ok[i][j]: answer number i may be assigned to gold j (Kuhn's algorithm)."""
    n = len(ok)
    owner = [-1] * n  # owner[j] = answer index assigned to gold j

    def assign(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if ok[i][j] and not seen[j]:
                seen[j] = True
                if owner[j] == -1 or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(assign(i, [False] * n) for i in range(n))


def grade(answer: str | None, gold: float | list[float], gold_unit: str = "number",
          gold_scale: str | None = None, rel_tol: float = 0.01,
          abs_tol: float = 1e-6) -> Grade:
    """Grade ``answer`` against ``gold`` (see the module docstring for the rules)."""
    # Gold values.
    raw_gold = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    try:
        golds = [float(g) for g in raw_gold]
    except (TypeError, ValueError):
        return Grade(False, None, "invalid_gold")
    if not golds or not all(math.isfinite(g) for g in golds):
        return Grade(False, None, "invalid_gold")
    if gold_unit not in _GOLD_UNITS:
        return Grade(False, None, "invalid_gold_unit")
    scale_key = (gold_scale or "").strip().lower()
    if scale_key not in _GOLD_SCALES:
        return Grade(False, None, "invalid_gold_scale")
    multiplier = _GOLD_SCALES[scale_key]

    def targets(g: float) -> list[float]:
        return [g] if multiplier is None else [g, g * multiplier]

    # Answer.
    if not isinstance(answer, str) or not answer.strip():
        return Grade(False, None, "no_answer")
    extracted = extract_answer(answer)
    if extracted is not None:
        answer = extracted
    numbers = parse_answer(answer)
    if not numbers:
        return Grade(False, None, "unparsable")

    def ok(p: ParsedNumber, g: float) -> bool:
        return _matches(p, targets(g), gold_unit, rel_tol, abs_tol)

    # Single gold value: the last number is graded.
    if len(golds) == 1:
        p, g = numbers[-1], golds[0]
        if ok(p, g):
            return Grade(True, [p.value], "match")
        if ok(_negated(p), g):
            return Grade(False, [p.value], "wrong_sign")
        return Grade(False, [p.value], "wrong_value")

    # Several gold values.
    predicted = [p.value for p in numbers]
    if len(numbers) != len(golds):
        return Grade(False, predicted, "wrong_count")
    if all(ok(p, g) for p, g in zip(numbers, golds)):
        return Grade(True, predicted, "match")
    table = [[ok(p, g) for g in golds] for p in numbers]
    if _has_perfect_matching(table):
        return Grade(True, predicted, "match_permutation")
    return Grade(False, predicted, "wrong_value")
