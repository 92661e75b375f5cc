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

Number parsing: see ``rl_assets.numbers`` (``parse_number`` / ``parse_answer``), re-exported here.

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

from rl_assets.numbers import ParsedNumber, parse_answer, parse_number

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
