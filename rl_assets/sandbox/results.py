"""What the agent sees: the QueryResult of a query, its error kinds and messages, and rows rendered as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rl_assets.sandbox.limits import SandboxLimits

__all__ = ["ERROR_KINDS", "QueryResult", "clean_message", "error_result", "render", "result_rows"]


@dataclass
class QueryResult:
    """Outcome of :func:`run_query`; ``text`` is what the agent sees."""

    ok: bool
    text: str  # rendered result (JSON records) or a clear error message
    error_kind: str | None  # None if ok, else one of ERROR_KINDS
    rows: int  # rows shown in ``text`` (after truncation)
    chars: int  # len(text)
    truncated: bool


ERROR_KINDS = frozenset(
    {
        "parse_error",
        "not_select",
        "multiple_statements",
        "forbidden_function",
        "forbidden_table",
        "unfiltered_query",
        "unknown_column",
        "timeout",
        "resource_limit",
        "execution_error",
        "query_too_long",
    }
)

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def clean_message(message: str) -> str:
    """Trim an error message: no ANSI codes, SQL echo or stack trace; bounded length."""
    message = _ANSI_ESCAPE.sub("", message)
    for marker in ("\n\nLINE ", "\nLINE ", "\n\nStack Trace", "\nStack Trace"):
        message = message.split(marker, 1)[0]
    message = message.strip()
    return message if len(message) <= 500 else message[:497] + "..."


def error_result(kind: str, message: str, limits: SandboxLimits) -> QueryResult:
    text = f"Error ({kind}): {message}"
    if len(text) > limits.max_chars:
        text = text[: max(limits.max_chars - 3, 0)] + "..."
        text = text[: limits.max_chars]
    return QueryResult(ok=False, text=text, error_kind=kind, rows=0, chars=len(text), truncated=False)


def _json_value(value: Any) -> Any:
    """Make a DuckDB value JSON-friendly (decimals become numbers, rest str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count + 1}")
    return unique


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder, not one per row


def render(names: list[str], rows: list[tuple], limits: SandboxLimits) -> QueryResult:
    """Render rows as a JSON list of objects, one row per line, within limits.

    Whole rows are dropped to respect max_chars (so the JSON stays valid) and a
    truncation note is appended; len(text) never exceeds max_chars.
    """
    keys = names if len(set(names)) == len(names) else _unique_names(names)
    more_rows = len(rows) > limits.max_rows
    rows = rows[: limits.max_rows]
    encode = _JSON_ENCODER.encode
    lines = [encode(dict(zip(keys, map(_json_value, row)))) for row in rows]
    total = f">{limits.max_rows}" if more_rows else str(len(rows))

    def build(n: int, note: str) -> str:
        body = "[" + ",\n ".join(lines[:n]) + "]"
        return body + ("\n" + note if note else "")

    note = f"[truncated: showing {len(rows)} of {total} rows]" if more_rows else ""
    text = build(len(lines), note)
    shown = len(lines)
    if len(text) > limits.max_chars:
        # Drop rows from the end until the text (with its note) fits.
        while shown > 0:
            shown -= 1
            note = (
                f"[truncated: output limit of {limits.max_chars} characters; "
                f"showing {shown} of {total} rows]"
            )
            text = build(shown, note)
            if len(text) <= limits.max_chars:
                break
        if len(text) > limits.max_chars:  # tiny max_chars
            text = text[: limits.max_chars]
    truncated = more_rows or shown < len(lines)
    return QueryResult(ok=True, text=text, error_kind=None, rows=shown, chars=len(text), truncated=truncated)


def result_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a query's output as the agent sees it: the JSON list `render` writes, without the lines that may
    follow it (a truncation note, an empty result's closest row labels). Raises ValueError for any other text (an
    error message)."""
    rows, _ = json.JSONDecoder().raw_decode(text)
    if not isinstance(rows, list):
        raise ValueError(f"not a query result: {text[:80]!r}")
    return rows
