"""A safe arithmetic evaluator for the agent's `calculator` tool (no eval, no names, bounded size).

Accepts numbers (with thousands separators `1,452.4`, `$` signs, `%` meaning /100, unicode minus),
+ - * / ** (also ^), unary minus and parentheses / square brackets. Anything else is an error.
"""

from __future__ import annotations

import ast
import math
import operator
import re

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 100
MAX_MAGNITUDE = 1e300

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%")


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its result is not a finite number."""


def normalise_expression(expression: str) -> str:
    text = expression.strip().replace("−", "-").replace("–", "-").replace("×", "*").replace("÷", "/")
    text = text.replace("$", "").replace("^", "**").replace("[", "(").replace("]", ")")
    text = _THOUSANDS.sub("", text)
    return _PERCENT.sub(r"(\1/100)", text)


def evaluate(expression: str) -> float:
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("Expression must be a non-empty string, e.g. '(29749 - 16741) / 16741 * 100'.")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"Expression is too long ({len(expression)} > {MAX_EXPRESSION_CHARS} characters).")
    try:
        tree = ast.parse(normalise_expression(expression), mode="eval")
    except SyntaxError:
        raise CalculatorError(
            f"Could not parse {expression!r}: use numbers, + - * / ** and parentheses only."
        ) from None
    value = _eval(tree.body)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("The result is not a finite number.")
    return value


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise CalculatorError("Division by zero.")
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise CalculatorError(f"Exponent {right:g} is too large (limit {MAX_EXPONENT}).")
            if left < 0 and not float(right).is_integer():
                raise CalculatorError("A negative number to a fractional power is not a real number.")
            if left == 0 and right < 0:
                raise CalculatorError("Division by zero.")
        try:
            return float(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculatorError("The result is too large.") from None
    raise CalculatorError(
        f"Unsupported element {type(node).__name__}: use numbers, + - * / ** and parentheses only."
    )


def format_number(value: float) -> str:
    """12 significant digits; plain notation (no exponent) between 1e-6 and 1e15."""
    text = f"{value:.12g}"
    if "e" in text and 1e-6 <= abs(value) < 1e15:
        text = f"{value:.{max(0, 12 - len(str(int(abs(value)))))}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return text
