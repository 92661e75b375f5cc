"""The one interpreter of gold programs: FinQA programs and TAT-QA arithmetic derivations.

Used by the raw loaders (to evaluate a program, list its numbers and their positions, and say what
kind of value it produces) and by the oracle (to compute the same program through the environment's
calculator with the numbers it fetched from the tables). Number literals are read with
`rl_assets.numbers.parse_number`, the project's one number parser.

FinQA programs (``parse_finqa_program``)
----------------------------------------
``"subtract(40678, 2526), divide(#0, 40678)"``: steps ``op(a, b)`` separated by commas; ``#k`` is step
k's result; ops ``add subtract multiply divide exp greater`` and ``table_sum table_average table_max
table_min`` (these take a row label and ``none``). Arguments: numbers (``1,234.5``, ``-3``, ``15%``
which FinQA reads as 0.15), constants ``const_<n>`` (``const_m1`` is -1) and references. ``evaluate``
gives None when the last step is ``greater`` / ``table_*`` or a step divides by zero or overflows.

TAT-QA derivations (``parse_derivation``)
-----------------------------------------
``"(1,452.4 - 1,146.2) / 1,146.2"``: numbers (``$`` signs, thousands commas, unicode minus, ``%``,
unit words thousand / million / billion converted into the question's scale), ``+ - * /``, parentheses
(``[ ]`` too). A lone unsigned number in parentheses is an accounting negative (``-114 - (71)`` = -43,
as TAT-QA's gold answers read it). Percentages behave like units: ``(2.7% + 2.0%) / 2`` stays in
percentage points (2.35); mixed with plain numbers a percentage is a fraction (``(1 - 15%) * 2`` =
1.7, ``1,027 / 11%`` = 9336.36).

Both kinds list their numbers (``numbers()``: text as written, magnitude, position) and render
themselves as plain calculator arithmetic with some numbers replaced (``to_calculator`` /
``step_expression``), so the oracle computes exactly what ``evaluate`` computes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Union

from rl_assets.numbers import parse_number

__all__ = [
    "ARITHMETIC_OPS", "FINQA_OPS", "Derivation", "FinQAProgram", "Number", "ProgramError",
    "evaluate_derivation", "parse_derivation", "parse_finqa_program", "number_magnitude",
]

ARITHMETIC_OPS = ("add", "subtract", "multiply", "divide", "exp")
FINQA_OPS = ARITHMETIC_OPS + ("greater", "table_sum", "table_average", "table_max", "table_min")
SCALE_FACTORS = {"thousand": 1e3, "million": 1e6, "billion": 1e9}

# Where a number stands in its program: the right operand of a division, an operand of a
# multiplication or power, or a term of a sum / difference (also a comparison).
DIVISOR, FACTOR, EXPONENT, TERM = "divisor", "factor", "exponent", "term"


class ProgramError(ValueError):
    """The program or derivation is not in the language above, or cannot be evaluated."""


@dataclass(frozen=True)
class Number:
    """One number literal of a program, as written and as the program means it."""

    text: str  # as written: '1,452.4', '$ 90,963', '15%', 'const_100', '60.3 million'
    value: float  # what the program computes with: FinQA '15%' -> 0.15; TAT-QA '15%' -> 15 (percent)
    magnitude: float  # |number as written|, to find it among table cells: '$ (1,234)' -> 1234
    is_percent: bool = False
    is_constant: bool = False  # a FinQA const_* token
    position: str = TERM
    unit_factor: float = 1.0  # TAT-QA unit word converted into the question's scale ('60.3 million' in thousands: 1000)


Resolve = Callable[[Number], Union[float, None]]  # a number's replacement magnitude, or None to keep it


def number_magnitude(text: str) -> float | None:
    """|value| of a number literal as written ('1,452.4' -> 1452.4, '-5%' -> 5.0); None if not a number."""
    parsed = parse_number(text)
    return abs(parsed.bare) if parsed is not None else None


def _format(value: float) -> str:
    return repr(float(value))


# ======================================================================================
# FinQA programs
# ======================================================================================

_STEP_RE = re.compile(r"\s*([A-Za-z_]+)\s*\(([^()]*)\)\s*")
_CONST_RE = re.compile(r"const_(m?)(\d+(?:\.\d+)?)")
_REF_RE = re.compile(r"#(\d+)")
_FINQA_NUMBER_RE = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?")


@dataclass(frozen=True)
class Ref:
    step: int


@dataclass(frozen=True)
class Step:
    op: str
    args: tuple  # Number | Ref, or (row label text, 'none') for table_* ops


@dataclass(frozen=True)
class FinQAProgram:
    text: str
    steps: tuple[Step, ...]

    @property
    def ops(self) -> list[str]:
        """Distinct ops in order of first use."""
        return list(dict.fromkeys(s.op for s in self.steps))

    def numbers(self) -> list[Number]:
        return [a for s in self.steps for a in s.args if isinstance(a, Number)]

    def as_json(self) -> list[dict]:
        """Steps as ``[{"op": ..., "args": [text, ...]}]`` (the raw table's program_steps)."""
        return [{"op": s.op, "args": [_arg_text(a) for a in s.args]} for s in self.steps]

    def evaluate(self, resolve: Resolve | None = None) -> float | None:
        """The program's value (None for greater / table_* results, division by zero, overflow)."""
        results: list[float | None] = []
        for step in self.steps:
            if step.op not in ARITHMETIC_OPS:
                results.append(None)
                continue
            a, b = (_finqa_value(x, results, resolve) for x in step.args)
            results.append(_apply(step.op, a, b))
        return results[-1] if results else None

    def step_expression(self, index: int, previous: list[str], resolve: Resolve | None = None) -> str:
        """Step ``index`` as calculator arithmetic; ``previous`` holds the earlier steps' results as text."""
        step = self.steps[index]
        if step.op not in ARITHMETIC_OPS:
            raise ProgramError(f"step {index} ({step.op}) is not arithmetic")
        left, right = (_finqa_text(x, previous, resolve) for x in step.args)
        return f"{left} {_FINQA_SYMBOL[step.op]} {right}"

    def result_kind(self) -> str | None:
        """What the result is: 'fraction' (a ratio; FinQA's 0.4632 for 46.32%), 'percent' (already in
        percent points, e.g. a fraction times 100), 'amount' (anything else), None (not arithmetic).

        Rules per step: a percentage literal is a fraction; a divisor that is a count constant (2 to 12)
        or a rescaling constant (1,000, 1,000,000) keeps the numerator's kind (an average, a unit change);
        any other division gives a fraction, except an amount divided by a fraction (an amount);
        a fraction times 100 is a percent; a fraction times an amount is an amount; a sum or difference
        of two fractions (or of a fraction and the constant 1) is a fraction, of two percents a percent;
        a fraction to a power is a fraction (a growth factor).
        """
        kinds: list[str | None] = []
        for step in self.steps:
            if step.op not in ARITHMETIC_OPS:
                kinds.append(None)
                continue
            a, b = step.args
            ka, kb = _kind(a, kinds), _kind(b, kinds)
            kinds.append(_combine_kind(step.op, a, b, ka, kb))
        return kinds[-1] if kinds else None


_FINQA_SYMBOL = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "exp": "**"}
_COUNT_CONSTANTS = {float(n) for n in range(2, 13)}
_RESCALE_CONSTANTS = {1e3, 1e6}


def _arg_text(a) -> str:
    if isinstance(a, Number):
        return a.text
    if isinstance(a, Ref):
        return f"#{a.step}"
    return a


def _constant_value(a) -> float | None:
    return a.value if isinstance(a, Number) and not a.is_percent else None


def _kind(a, kinds: list[str | None]) -> str | None:
    if isinstance(a, Ref):
        return kinds[a.step]
    if isinstance(a, Number):
        return "fraction" if a.is_percent else "amount"
    return None


def _combine_kind(op: str, a, b, ka: str | None, kb: str | None) -> str | None:
    if ka is None or kb is None:
        return None
    ca, cb = _constant_value(a), _constant_value(b)
    if op == "divide":
        if cb in _COUNT_CONSTANTS or cb in _RESCALE_CONSTANTS:
            return ka
        if ka == "amount" and kb == "fraction":
            return "amount"
        return "fraction"
    if op == "multiply":
        if (ka == "fraction" and cb == 100.0) or (kb == "fraction" and ca == 100.0):
            return "percent"
        if ka == kb == "fraction":
            return "fraction"
        return "amount"
    if op in ("add", "subtract"):
        if ka == kb:
            return ka
        if {ka, kb} == {"fraction", "amount"} and (ca == 1.0 or cb == 1.0):
            return "fraction"
        return "amount"
    if op == "exp":
        return "fraction" if ka == "fraction" else "amount"
    return None


def _finqa_value(a, results: list[float | None], resolve: Resolve | None) -> float | None:
    if isinstance(a, Ref):
        return results[a.step]
    replacement = resolve(a) if resolve is not None and not a.is_constant else None
    if replacement is None:
        return a.value
    value = math.copysign(abs(replacement), a.value) if a.value else abs(replacement)
    return value / 100.0 if a.is_percent else value


def _finqa_text(a, previous: list[str], resolve: Resolve | None) -> str:
    if isinstance(a, Ref):
        return f"({previous[a.step]})"
    replacement = resolve(a) if resolve is not None and not a.is_constant else None
    if replacement is None:
        return f"({_format(a.value)})"
    magnitude = _format(abs(replacement))
    text = f"-{magnitude}" if a.value < 0 else magnitude
    return f"({text} / 100)" if a.is_percent else f"({text})"


def _apply(op: str, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    try:
        if op == "add":
            r = a + b
        elif op == "subtract":
            r = a - b
        elif op == "multiply":
            r = a * b
        elif op == "divide":
            r = a / b
        else:
            r = a ** b
    except (ZeroDivisionError, OverflowError):
        return None
    if isinstance(r, complex) or not math.isfinite(r):
        return None
    return r


def parse_finqa_program(program: str) -> FinQAProgram:
    """Parse ``"op(a, b), op(#0, c)"``; raises :class:`ProgramError` for anything outside the FinQA DSL."""
    if not isinstance(program, str) or not program.strip():
        raise ProgramError("empty program")
    steps: list[Step] = []
    pos, n = 0, len(program)
    while True:
        m = _STEP_RE.match(program, pos)
        if not m:
            raise ProgramError(f"cannot parse step {len(steps)} at {program[pos:pos + 30]!r}")
        op, raw_args = m.group(1), m.group(2)
        if op not in FINQA_OPS:
            raise ProgramError(f"unknown op {op!r}")
        args = [a.strip() for a in raw_args.split(",")]
        if op.startswith("table_") and len(args) > 2:  # row labels may contain commas
            args = [", ".join(args[:-1]), args[-1]]
        k = len(steps)
        if len(args) != 2 or any(a == "" for a in args):
            raise ProgramError(f"step {k} ({op}) needs 2 non-empty args, got {args}")
        if op.startswith("table_"):
            if args[1].lower() != "none":
                raise ProgramError(f"step {k} ({op}) second arg must be 'none', got {args[1]!r}")
            if _REF_RE.fullmatch(args[0]):
                raise ProgramError(f"step {k} ({op}) takes a row label, not {args[0]!r}")
            steps.append(Step(op, (args[0], args[1])))
        else:
            positions = _finqa_positions(op)
            steps.append(Step(op, tuple(_finqa_arg(a, k, p) for a, p in zip(args, positions))))
        pos = m.end()
        if pos == n:
            break
        if program[pos] != ",":
            raise ProgramError(f"expected ',' after step {k}, got {program[pos:pos + 20]!r}")
        pos += 1
    return FinQAProgram(program, tuple(steps))


def _finqa_positions(op: str) -> tuple[str, str]:
    if op == "divide":
        return TERM, DIVISOR
    if op == "multiply":
        return FACTOR, FACTOR
    if op == "exp":
        return FACTOR, EXPONENT
    return TERM, TERM


def _finqa_arg(a: str, k: int, position: str):
    m = _REF_RE.fullmatch(a)
    if m:
        if int(m.group(1)) >= k:
            raise ProgramError(f"step {k} refers to #{m.group(1)} (not an earlier step)")
        return Ref(int(m.group(1)))
    m = _CONST_RE.fullmatch(a)
    if m:
        v = float(m.group(2))
        return Number(a, -v if m.group(1) else v, v, is_constant=True, position=position)
    if _FINQA_NUMBER_RE.fullmatch(a):
        parsed = parse_number(a)
        if parsed is not None:
            pct = parsed.is_percent
            return Number(a, parsed.bare / 100.0 if pct else parsed.bare, abs(parsed.bare),
                          is_percent=pct, position=position)
    raise ProgramError(f"step {k}: bad argument {a!r}")


# ======================================================================================
# TAT-QA derivations
# ======================================================================================

_DERIVATION_TOKEN = re.compile(
    r"""
    (?P<number>\$?\s*(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?
        (?:\s*(?:thousand|million|billion)\b)?(?:\s*%)?)
    | (?P<op>[-+*/()\[\]])
    | (?P<space>\s+|\$)              # a '$' before a parenthesis or sign: '$(290.2 + 239.6)'
    """,
    re.VERBOSE | re.IGNORECASE,
)
_CHAR_MAP = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2012": "-", "\ufe63": "-",
                           "\uff0d": "-", "\u00d7": "*", "\u00f7": "/", "[": "(", "]": ")"})


@dataclass(frozen=True)
class _Num:
    number: Number


@dataclass(frozen=True)
class _Neg:
    operand: object


@dataclass(frozen=True)
class _Bin:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Derivation:
    text: str
    scale: str
    tree: object = field(repr=False)

    def numbers(self) -> list[Number]:
        """Every number literal in reading order; position from the operator applied to it directly."""
        out: list[Number] = []

        def walk(node, position: str):
            if isinstance(node, _Num):
                n = node.number
                out.append(Number(n.text, n.value, n.magnitude, n.is_percent, n.is_constant, position, n.unit_factor))
            elif isinstance(node, _Neg):
                walk(node.operand, position)
            elif isinstance(node, _Bin):
                left = FACTOR if node.op == "*" else TERM
                walk(node.left, left)
                walk(node.right, {"*": FACTOR, "/": DIVISOR}.get(node.op, TERM))

        walk(self.tree, TERM)
        return out

    def evaluate(self, resolve: Resolve | None = None) -> float:
        value, _ = _interpret(self.tree, _NUMERIC, resolve)
        if not math.isfinite(value):
            raise ProgramError("non-finite result")
        return value

    def to_calculator(self, resolve: Resolve | None = None) -> str:
        """Plain arithmetic (numbers, + - * /, parentheses) that evaluates to ``evaluate(resolve)``."""
        text, _ = _interpret(self.tree, _TEXTUAL, resolve)
        return text


class _Numeric:
    """Interpretation of a derivation as a number."""

    @staticmethod
    def leaf(n: Number, replacement: float | None) -> float:
        if replacement is None:
            return n.value
        return math.copysign(abs(replacement), n.value) * n.unit_factor if n.value else abs(replacement) * n.unit_factor

    @staticmethod
    def neg(a: float) -> float:
        return -a

    @staticmethod
    def fraction(a: float) -> float:
        return a / 100.0

    @staticmethod
    def binary(op: str, a: float, b: float) -> float:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise ProgramError("division by zero")
        return a / b


class _Textual:
    """Interpretation of a derivation as calculator arithmetic text."""

    @staticmethod
    def leaf(n: Number, replacement: float | None) -> str:
        value = _Numeric.leaf(n, replacement)
        return f"({_format(value)})" if value < 0 else _format(value)

    @staticmethod
    def neg(a: str) -> str:
        return f"(-{a})"

    @staticmethod
    def fraction(a: str) -> str:
        return f"({a} / 100)"

    @staticmethod
    def binary(op: str, a: str, b: str) -> str:
        return f"({a} {op} {b})"


_NUMERIC, _TEXTUAL = _Numeric(), _Textual()


def _interpret(node, algebra, resolve: Resolve | None):
    """(result, is_percent) of a derivation tree under an algebra (numbers or calculator text)."""
    if isinstance(node, _Num):
        n = node.number
        return algebra.leaf(n, resolve(n) if resolve is not None else None), n.is_percent
    if isinstance(node, _Neg):
        v, p = _interpret(node.operand, algebra, resolve)
        return algebra.neg(v), p
    a, pa = _interpret(node.left, algebra, resolve)
    b, pb = _interpret(node.right, algebra, resolve)
    op = node.op
    if op in "+-":
        if pa != pb:  # '1 - 15%': a percentage among plain numbers is a fraction
            a, b = (algebra.fraction(a) if pa else a), (algebra.fraction(b) if pb else b)
            return algebra.binary(op, a, b), False
        return algebra.binary(op, a, b), pa
    if op == "*":
        return algebra.binary("*", algebra.fraction(a) if pa else a, algebra.fraction(b) if pb else b), False
    if pa and not pb:  # averaging percentages stays in percentage points
        return algebra.binary("/", a, b), True
    return algebra.binary("/", algebra.fraction(a) if pa else a, algebra.fraction(b) if pb else b), False


class _Parser:
    """Recursive descent over the tokens: expression := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := ('-'|'+') unary | primary; primary := number | '(' number ')' (a negative) | '(' expression ')'."""

    def __init__(self, text: str, scale: str):
        self.tokens = _tokenize(text, scale)
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.peek()
        self.pos += 1
        return token

    def expression(self):
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = _Bin(op, node, self.term())
        return node

    def term(self):
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = _Bin(op, node, self.unary())
        return node

    def unary(self):
        token = self.peek()
        if token in ("-", "+"):
            self.take()
            operand = self.unary()
            return _Neg(operand) if token == "-" else operand
        return self.primary()

    def primary(self):
        token = self.take()
        if isinstance(token, Number):
            return _Num(token)
        if token == "(":
            nxt = self.peek()
            if isinstance(nxt, Number) and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1] == ")":
                self.take()
                self.take()
                return _Neg(_Num(nxt))  # accounting negative: a lone unsigned number in parentheses
            node = self.expression()
            if self.take() != ")":
                raise ProgramError("unbalanced parentheses")
            return node
        raise ProgramError(f"unexpected {'end of expression' if token is None else repr(token)}")


def _tokenize(text: str, scale: str) -> list:
    s = text.translate(_CHAR_MAP)
    target = SCALE_FACTORS.get((scale or "").strip().lower(), 1.0)
    tokens: list = []
    pos = 0
    while pos < len(s):
        m = _DERIVATION_TOKEN.match(s, pos)
        if not m:
            raise ProgramError(f"unsupported syntax at {s[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("space"):
            continue
        if m.group("op"):
            tokens.append(m.group("op"))
            continue
        literal = m.group("number").strip()
        parsed = parse_number(literal)
        if parsed is None:  # pragma: no cover - the token pattern only matches numbers
            raise ProgramError(f"bad number {literal!r}")
        unit = parsed.scale / target if parsed.scale != 1.0 else 1.0
        tokens.append(Number(literal, parsed.bare * unit, abs(parsed.bare), parsed.is_percent, unit_factor=unit))
    return tokens


def parse_derivation(text: str, scale: str | None = None) -> Derivation:
    """Parse a TAT-QA arithmetic derivation; raises :class:`ProgramError` if it is not plain arithmetic."""
    if not isinstance(text, str) or not text.strip():
        raise ProgramError("empty derivation")
    parser = _Parser(text, scale or "")
    if not parser.tokens:
        raise ProgramError("empty derivation")
    tree = parser.expression()
    if parser.peek() is not None:
        raise ProgramError(f"unexpected {parser.peek()!r} after a complete expression")
    return Derivation(text, scale or "", tree)


def evaluate_derivation(text: str, scale: str | None = None) -> float:
    """The value of a TAT-QA derivation (see the module docstring); raises :class:`ProgramError`."""
    return parse_derivation(text, scale).evaluate()
