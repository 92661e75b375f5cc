"""The one number parser of the project: answer text, table cells and stated answers.

Used by grading (answers), the oracle (tool output) and the raw loaders. The dbt macro
`parse_number` (dbt_project/macros) must agree with it on every world cell.

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
  ``{,}``, ``\\,`` between digit groups, ``\\left(``/``\\right)``, the math delimiters
  ``\\( \\) \\[ \\]`` and ``$...$`` around a number (``$0.233$`` is 0.233, not an amount).
* Fractions ``233/1000`` (unsigned plain decimals around one ``/``, no spaces) are
  read as one number only with ``fractions=True`` (answers): table cells such as
  ``11/2004`` and ``2/16/2022`` are dates. A chain ``1/2/3`` is not a fraction, and a
  zero denominator gives no number.
* ``currency`` records that a currency marker was written (``$5`` states an amount).
* ``parse_answer`` returns every number, in order. ``parse_number`` returns
  the FIRST one, or ``None``. ``parse_exact`` returns the number only when it is
  the whole text (surrounding whitespace and ``$`` math delimiters aside).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["ParsedNumber", "parse_answer", "parse_exact", "parse_number"]

@dataclass(frozen=True)
class ParsedNumber:
    value: float  # numeric value with scale word applied ('$1.2 billion' -> 1.2e9)
    bare: float  # the number as written, without scale word (1.2)
    is_percent: bool  # written with % / 'percent' / 'pct'
    scale: float  # 1, 1e3, 1e6, 1e9, 1e12
    currency: bool = False  # written with a currency marker ($, USD, EUR, ...)


_SCALE_WORDS = {
    "thousand": 1e3, "thousands": 1e3, "k": 1e3,
    "million": 1e6, "millions": 1e6, "mn": 1e6, "mm": 1e6, "m": 1e6,
    "billion": 1e9, "billions": 1e9, "bn": 1e9, "b": 1e9,
    "trillion": 1e12, "trillions": 1e12, "tn": 1e12, "t": 1e12,
}

_MINUS_CHARS = "-\u2212"

_NUMBER_PATTERN = r"""
    (?<![\w.])                                   # not glued to a word/number
    (?P<open>\(\s*)?
    (?P<sign1>[-+\u2212]\s*)?
    (?P<cur>(?:US\$|USD|EUR|GBP|\$|€|£|¥)\s*)?
    (?P<open2>\(\s*)?
    (?P<sign2>[-+\u2212]\s*)?
    (?P<num>
        {fraction}
        \d{{1,3}}(?:,\d{{3}})+(?!\d)(?:\.\d+)?       # 1,234,567.89
      | \d+(?:\.\d+)?                            # 1234.5
      | \.\d+                                    # .5
    )
    (?P<exp>[eE][-+]?\d+)?
    (?:\s*(?P<scale>thousands?|millions?|billions?|trillions?
                   |mm|mn|bn|tn|k|m|b|t)\b)?
    (?:\s*(?P<pct>%|percentage\s+points?\b|percent\b|per\s?cent\b|pct\b|pp\b))?
    (?P<close>\s*\))?
    """
# 233/1000: one slash between plain decimals, not part of a chain such as a date 2/16/2022
_FRACTION = r"(?<!/)(?P<fraction>\d+(?:\.\d+)?/\d+(?:\.\d+)?)(?!\d|\.\d|[eE][-+]?\d|/\d) |"
_NUMBER_RE = re.compile(_NUMBER_PATTERN.format(fraction=""), re.IGNORECASE | re.VERBOSE)
_NUMBER_OR_FRACTION_RE = re.compile(_NUMBER_PATTERN.format(fraction=_FRACTION), re.IGNORECASE | re.VERBOSE)

_YEAR_LABEL_RE = re.compile(r"\s*:")

_LATEX_SUBS = [
    (re.compile(r"\\(?:text|mathrm|textbf|mathbf|textrm|mbox)\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\left\s*([()\[\]])"), r"\1"),
    (re.compile(r"\\right\s*([()\[\]])"), r"\1"),
    (re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))"), ","),
    (re.compile(r"\\[()\[\]]"), " "),  # \( \) \[ \] math delimiters
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\\$"), "$"),
    # $...$ math delimiters around a number ('$0.233$', '$30.6%$'): a '$' right after a digit or '%'
    # closes math mode, so neither it nor its opening '$' is a currency marker
    (re.compile(r"\$\$?([^$]*?[\d%])\$\$?"), r" \1 "),
    (re.compile(r"\\[,;:! ]"), " "),
]

_SPACE_CHARS = {"\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " "}


def _clean(text: str) -> str:
    for bad, good in _SPACE_CHARS.items():
        text = text.replace(bad, good)
    for pattern, repl in _LATEX_SUBS:
        text = pattern.sub(repl, text)
    return text


def parse_answer(text: str, fractions: bool = False) -> list[ParsedNumber]:
    """All numbers in an answer, in order (see the module docstring for rules)."""
    return [p for p, _, _ in _numbers(text, fractions)]


def _numbers(text: str, fractions: bool) -> list[tuple[ParsedNumber, int, int]]:
    """(number, start, end) for every number of ``text`` after the LaTeX clean-up, positions in that text."""
    if not isinstance(text, str) or not text:
        return []
    text = _clean(text)
    out: list[tuple[ParsedNumber, int, int]] = []
    pattern = _NUMBER_OR_FRACTION_RE if fractions else _NUMBER_RE
    for m in pattern.finditer(text):
        num = m.group("num")
        fraction = m.groupdict().get("fraction")
        plain = not (m.group("sign1") or m.group("sign2") or m.group("cur")
                     or m.group("exp") or m.group("scale") or m.group("pct")
                     or m.group("open") or m.group("open2"))
        if plain and len(num) == 4 and num.isdigit() and _YEAR_LABEL_RE.match(text, m.end()):
            continue  # '2019: 5.0' -> the year is a label

        if fraction:
            numerator, denominator = (float(x) for x in fraction.split("/"))
            if denominator == 0:
                continue  # '1/0' is no number
            bare = numerator / denominator
        else:
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
        number = ParsedNumber(value=value, bare=bare, is_percent=m.group("pct") is not None,
                              scale=scale, currency=m.group("cur") is not None)
        out.append((number, m.start(), m.end()))
    return out


def parse_exact(text: str, fractions: bool = True) -> ParsedNumber | None:
    """The number that is the whole of ``text``, or None.

    Whitespace and ``$`` (LaTeX math delimiters such as ``$0.233$``) around it are allowed; any other
    text (a word, a second number, an unclosed parenthesis) gives None. '$1,234' -> 1234, '(77)' -> -77,
    '6.28%' -> 6.28 (percent), '233/1000' -> 0.233, 'about 5' -> None, '5 and 6' -> None.
    """
    if not isinstance(text, str):
        return None
    found = _numbers(text, fractions)
    if len(found) != 1:
        return None
    number, start, end = found[0]
    cleaned = _clean(text)
    if cleaned[:start].strip(" \t\n$") or cleaned[end:].strip(" \t\n$"):
        return None
    if cleaned.count("(", start, end) != cleaned.count(")", start, end):
        return None  # '(5' opens a parenthesis it never closes
    return number


def parse_number(text: str) -> ParsedNumber | None:
    """Parse one number (the first one in ``text``); None when there is none.

    Examples: '$61,307', '$ 40678', '(1,234)' -> -1234, '-3.4%', '12.5 percent',
    '8.1 years' -> 8.1, '1.2 million', '$3.5bn', 'USD 1,000', '\u22125', '1e3', '.5',
    'approximately 93.8%'. '\u2014', '-', '' and 'n/a' give None.
    """
    numbers = parse_answer(text)
    return numbers[0] if numbers else None
