"""Deterministic answer grader for the financial-QA RL environment.

Standard library only. The entry points are:

* ``extract_answer(text)``: pulls the final answer string out of a completion.
* ``parse_number(text)`` / ``parse_answer(text)``: turn an answer string into
  numbers (``ParsedNumber``), re-exported from ``rl_assets.numbers``, the one number parser.
* ``grade(answer, gold, gold_unit, gold_scale, rel_tol, abs_tol, mode)``: gives a
  ``Grade(correct, predicted, reason)``.

Two modes (``GRADING_MODES``): ``strict`` (the default, used for training and evaluation) and
``reference`` (the reward rule of the OpenEnv FinQA environment, to compare scores with published
ones). docs/environment.md has the rules of both as a table of examples; tests/test_grading.py runs
every row of that table.

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

The gold
--------
``gold`` is a number (or a list of numbers) in the task's terms:

* ``gold_unit="number"``: an amount or count, in the task's scale ``gold_scale``
  (``''``/``None``: units; ``thousand``, ``million``, ``billion``, ``trillion``, plurals and
  any case). Gold -7.0 with scale ``million`` is -7,000,000.
* ``gold_unit="percent"``: the question asks for a percentage; the gold is in percent points (12.3
  is 12.3%; FinQA's "what percentage ..." answered 0.9379 is curated as 93.79). A ``number`` gold
  whose ``gold_scale`` is ``percent`` (TAT-QA) is a percent gold.
* ``gold_unit="ratio"``: the question asks for a true ratio or multiple ("the ratio of A to B",
  "how many times"): 5.01 is 5.01 (times), never 501% or 5.01%.

Percent and ratio golds are dimensionless: a scale word in ``gold_scale`` is ignored for them.
``percent``, ``units`` and ``none`` are accepted as no scale. Any other ``gold_scale`` gives
``reason="invalid_gold_scale"``, any other unit ``invalid_gold_unit``; a gold that is empty,
non-numeric, NaN or infinite gives ``invalid_gold``.

Strict grading (``mode="strict"``)
----------------------------------
What an answer number *states* must agree with the gold in absolute terms:

* a ``%`` (or ``percent``, ``pct``, ``pp``, ``percentage points``) states a percent:
  ``30.59%`` is 0.3059. So percent gold 30.5851 accepts ``30.59%`` and rejects ``3058.5106%``
  and ``0.305851%``; number gold 4.5 rejects ``4.5%`` (it is 0.045); number gold 0.5 accepts
  ``50%``. A percent never matches a ratio gold: ratio gold 5.01 rejects ``5.01%`` and ``501%``.
* a scale word (``thousand``/``k``, ``million``/``m``/``mn``, ``billion``/``bn``/``b``,
  ``trillion``) states an absolute amount: gold -7.0 (million) accepts ``-7.0 million``,
  ``-7000 thousand`` and ``-0.007 billion`` and rejects ``-7.0 trillion``; gold 27 (no scale)
  rejects ``27.0 billion``. A scale word never matches a percent or ratio gold.
* a currency marker (``$``, ``USD``, ...) states an amount of money: it never matches a percent or
  ratio gold. Without a scale word it is read like a bare number (filings print ``$61,307`` in a
  table "in millions").
* only a bare number may be read in the task's scale: for a ``number`` gold it is the amount
  in units or in ``gold_scale`` (gold -7.0 million accepts ``-7`` and ``-7,000,000``); for a
  ``percent`` gold it is the percent or the fraction (percent gold 93.79 accepts ``93.79`` and
  ``0.9379``), never 100 times either; for a ``ratio`` gold it is the ratio as written and
  nothing else (ratio gold 5.01 accepts ``5.01`` and ``5.01x`` and rejects ``501`` and ``0.0501``).
  Only percent questions get the double reading.
* Fractions ``233/1000`` are read as their value.
* Tolerance: an answer value ``p`` (in the gold's terms) matches gold ``g`` when
  ``|p - g| <= max(rel_tol * |g|, abs_tol)``; defaults rel_tol=0.01, abs_tol=1e-9 in the gold's
  terms (which only matters for a gold of zero: float noise such as 1e-13 still matches 0, while a
  gold of 0.00001 keeps its 1% tolerance). There is no absolute cap: the tolerance does not
  depend on the scale the gold happens to be written in.
* Sign is strict. A gold of -12.6 does not accept ``12.6 decrease`` or ``12.6``; ``(12.6)``
  is negative and matches. When only the sign is wrong, the reason is ``wrong_sign``.
* When the number as written matches the gold at some power of ten (as written, x100, /100,
  x1000^k, ...) but what it states does not, the reason is ``wrong_unit`` (e.g. ``3058.5106%``,
  ``-7.0 trillion``, ``501`` or ``5.01%`` for ratio gold 5.01); otherwise ``wrong_value``.
* One gold value: the LAST number in the answer is graded (the others are ignored).
* n > 1 gold values: the answer must contain exactly n numbers, or else ``reason="wrong_count"``.
  They are matched in order first (``reason="match"``); if that fails, any one-to-one assignment
  of answer numbers to gold values is accepted (``reason="match_permutation"``).
* ``answer`` is normally the ``submit_answer`` string; if it contains a ``\\boxed{}`` or
  ``FINAL ANSWER:``, ``extract_answer`` is applied to it first.

Reference grading (``mode="reference"``)
----------------------------------------
The rule of the OpenEnv FinQA environment's reward (``compute_reward``), re-implemented:

* the answer is the content of its FIRST ``\\boxed{...}`` (no nested braces), else the whole
  string; it must be exactly one number (``parse_exact``: currency, commas, parentheses, ``%``
  and fractions allowed; words, scale words and percent words are not: ``5 million`` and
  ``5 percent`` are unparsable);
* the gold is what the reference reads from its ground truth: a percent gold ``g`` is ``g/100``,
  a ratio gold ``g``, a number gold ``g`` as written (``gold_scale`` ignored);
* a ``%`` answer is tried as value/100 and, failing that, as written (so ``4.5%`` matches a
  number gold 4.5, and ``0.305851%`` a percent gold 30.5851); a bare number only as written;
* tolerance: both ``|p - g| / |g| <= rel_tol`` and ``|p - g| <= max_abs_diff`` (default 1.0);
  a gold of 0 needs ``|p| < 0.001``;
* several gold values: the answer is split on ``,`` / ``;``, the counts must agree and the
  values match in order.

Both modes: reasons ``no_answer`` (``None``, empty or whitespace-only answer), ``unparsable``
(no number in the answer), ``wrong_value`` and those above. ``grade`` never raises on any answer
string. ``predicted`` holds the parsed ``value`` of each graded number as written (only the last
one for a single gold in strict mode), or ``None`` when nothing was parsed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rl_assets.numbers import ParsedNumber, parse_answer, parse_exact, parse_number

__all__ = [
    "GRADING_MODES",
    "Grade",
    "ParsedNumber",
    "extract_answer",
    "grade",
    "parse_answer",
    "parse_number",
]

GRADING_MODES = ("strict", "reference")

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
# powers of ten at which a number as written is "right but stated in the wrong unit" (reason wrong_unit)
_OTHER_SCALES = tuple(10.0 ** k for k in range(-12, 13))


def _close(p: float, t: float, rel_tol: float, abs_tol: float) -> bool:
    return abs(p - t) <= max(rel_tol * abs(t), abs_tol)


def _strict_readings(p: ParsedNumber, gold_unit: str, multiplier: float) -> list[float]:
    """What answer number ``p`` may mean, in the gold's terms (see the module docstring)."""
    # the gold's terms per absolute unit: percent points are hundredths, a number gold is in its scale
    per_unit = {"percent": 100.0, "ratio": 1.0}.get(gold_unit, 1.0 / multiplier)
    if p.is_percent:  # states a percent, which a true ratio is not
        return [] if gold_unit == "ratio" else [p.value / 100.0 * per_unit]
    if p.scale != 1.0:  # states an absolute amount, never a percent or a ratio
        return [p.value * per_unit] if gold_unit == "number" else []
    if gold_unit == "number":  # bare or currency: in units, or in the task's scale
        return [p.bare * per_unit] if multiplier == 1.0 else [p.bare * per_unit, p.bare]
    if p.currency:  # an amount of money is not a percent or a ratio
        return []
    if gold_unit == "ratio":  # a true ratio or multiple: the number as written, no x100 / /100 reading
        return [p.bare]
    return [p.bare / 100.0 * per_unit, p.bare * per_unit]  # a percent question: the percent, or the fraction


def _negated(p: ParsedNumber) -> ParsedNumber:
    return ParsedNumber(-p.value, -p.bare, p.is_percent, p.scale, p.currency)


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
          abs_tol: float = 1e-9, mode: str = "strict", max_abs_diff: float = 1.0) -> Grade:
    """Grade ``answer`` against ``gold`` (see the module docstring for the rules).

    ``mode``: "strict" (default) or "reference"; ``max_abs_diff`` is the reference mode's absolute cap.
    Raises ValueError for an unknown mode; never raises for any answer.
    """
    if mode not in GRADING_MODES:
        raise ValueError(f"unknown grading mode {mode!r}; expected one of {GRADING_MODES}")
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
    if scale_key == "percent" and gold_unit == "number":
        gold_unit = "percent"
    multiplier = _GOLD_SCALES[scale_key] if gold_unit == "number" and _GOLD_SCALES[scale_key] else 1.0

    if not isinstance(answer, str) or not answer.strip():
        return Grade(False, None, "no_answer")
    if mode == "reference":
        return _grade_reference(answer, golds, gold_unit, rel_tol, max_abs_diff)

    extracted = extract_answer(answer)
    if extracted is not None:
        answer = extracted
    numbers = parse_answer(answer, fractions=True)
    if not numbers:
        return Grade(False, None, "unparsable")

    def ok(p: ParsedNumber, g: float) -> bool:
        return any(_close(r, g, rel_tol, abs_tol) for r in _strict_readings(p, gold_unit, multiplier))

    # Single gold value: the last number is graded.
    if len(golds) == 1:
        p, g = numbers[-1], golds[0]
        if ok(p, g):
            return Grade(True, [p.value], "match")
        if ok(_negated(p), g):
            return Grade(False, [p.value], "wrong_sign")
        if g != 0 and any(_close(p.bare * k, g, rel_tol, 0.0) for k in _OTHER_SCALES):
            return Grade(False, [p.value], "wrong_unit")
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


# --------------------------------------------------------------------------
# Reference mode (the OpenEnv FinQA reward rule)
# --------------------------------------------------------------------------

_REFERENCE_BOXED_RE = re.compile(r"\\boxed\{([^}]+)\}")
_REFERENCE_SPLIT_RE = re.compile(r"[,;]\s*")


def _reference_close(p: float, t: float, rel_tol: float, max_abs_diff: float) -> bool:
    if t == 0:
        return abs(p) < 0.001
    diff = abs(p - t)
    return diff / abs(t) <= rel_tol and diff <= max_abs_diff


def _grade_reference(answer: str, golds: list[float], gold_unit: str, rel_tol: float,
                     max_abs_diff: float) -> Grade:
    truths = [g / 100.0 if gold_unit == "percent" else g for g in golds]
    pieces = [answer] if len(truths) == 1 else _REFERENCE_SPLIT_RE.split(answer.strip())
    numbers: list[ParsedNumber] = []
    for piece in pieces:
        boxed = _REFERENCE_BOXED_RE.search(piece)
        text = boxed.group(1).strip() if boxed else piece.strip()
        p = parse_exact(text, fractions=True)
        # the reference reads neither scale words nor percent words ('5 percent'), only a '%' sign
        if p is None or p.scale != 1.0 or (p.is_percent and "%" not in text):
            return Grade(False, [n.value for n in numbers] or None, "unparsable")
        numbers.append(p)
    predicted = [p.value for p in numbers]
    if len(numbers) != len(truths):
        return Grade(False, predicted, "wrong_count")

    def ok(p: ParsedNumber, t: float) -> bool:
        readings = [p.value / 100.0, p.value] if p.is_percent else [p.value]
        return any(_reference_close(r, t, rel_tol, max_abs_diff) for r in readings)

    if all(ok(p, t) for p, t in zip(numbers, truths)):
        return Grade(True, predicted, "match")
    if all(ok(_negated(p), t) or ok(p, t) for p, t in zip(numbers, truths)):
        return Grade(False, predicted, "wrong_sign")
    return Grade(False, predicted, "wrong_value")
