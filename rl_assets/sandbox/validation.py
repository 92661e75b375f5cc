"""Validation of an agent query: one SELECT over the allowed table with allowlisted functions, bounded
string growth, filtered, known columns. `validate` returns the SQL to execute (rewritten, see
rl_assets.sandbox.rewrite), taking the token-level fast path (rl_assets.sandbox.simple_select) for the simple
queries agents write most; anything else goes through sqlglot, which also writes every error message."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

import sqlglot
from sqlglot import exp

from rl_assets.sandbox import simple_select
from rl_assets.sandbox.allowlist import (
    AGGREGATE_FUNCTIONS,
    ALLOWED_FUNCTIONS,
    FORBIDDEN_NODE_TYPES,
    MAX_STRING_GROWTH,
    WINDOW_FUNCTIONS,
)
from rl_assets.sandbox.limits import SandboxLimits
from rl_assets.sandbox.results import clean_message
from rl_assets.sandbox.rewrite import bounded_sql, cte_names, is_cte_reference, rewrite

__all__ = ["QueryRejected", "UNFILTERED_MESSAGE", "Validated", "validate"]

UNFILTERED_MESSAGE = (
    "Only filtered queries are allowed: add a WHERE clause, LIMIT, or aggregate; "
    "SELECT * is not allowed"
)

# First words that start a read query; used to tell "syntax error in a SELECT"
# from "some other statement sqlglot cannot parse" (e.g. EXPORT DATABASE).
_SELECT_LIKE_STARTS = frozenset({"select", "with", "from", "(", "values", "table"})
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SIMPLE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


class QueryRejected(Exception):
    """A query that fails validation: ``kind`` is one of ERROR_KINDS, ``message`` is for the agent."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Validated:
    sql: str  # the DuckDB SQL to execute
    cte_names: dict[str, str]  # renamed CTE -> the name the agent wrote (to translate error messages)
    fast_path: bool  # recognised by rl_assets.sandbox.simple_select (no sqlglot)


def validate(
    query: Any,
    schema: str,
    table: str,
    limits: SandboxLimits,
    columns: list[str] | tuple[str, ...] | None,
    fast_path: bool = True,
) -> Validated:
    """Run all checks and return the SQL to execute; raises QueryRejected (kind + message for the agent).

    ``columns`` (optional): the table's columns; others are rejected with a list of them, and the fast
    path needs them. ``fast_path=False`` skips :mod:`rl_assets.sandbox.simple_select`.
    """
    if not isinstance(query, str):
        raise QueryRejected("parse_error", "Query must be a string.")
    if len(query) > limits.max_query_chars:
        raise QueryRejected(
            "query_too_long",
            f"Query is too long ({len(query)} characters; the limit is {limits.max_query_chars}).",
        )
    if _CONTROL_CHARS.search(query):
        raise QueryRejected("parse_error", "Query contains control characters (e.g. NUL bytes).")

    if fast_path and columns is not None:
        # the common simple queries: safe by construction, no sqlglot needed (never rejects)
        fast = simple_select.recognise(query, schema, table, columns, limits.max_rows + 1)
        if fast is not None:
            return Validated(fast, {}, True)

    statement = _parse_single_statement(query)
    _check_statement_type(statement, query)
    _check_functions(statement, query)
    _check_tables(statement, schema, table)
    _check_string_growth(statement, query)
    _check_filtered(statement)
    if columns is not None:
        _check_columns(statement, columns)

    rewritten, renamed = rewrite(statement, schema, table)
    # comments=False: comments are dropped so that nothing the agent wrote in a
    # comment (e.g. "*/ ; DROP ...") can reach DuckDB as code.
    return Validated(bounded_sql(rewritten, limits.max_rows + 1), renamed, False)


def _parse_single_statement(query: str) -> exp.Expression:
    """Parse with sqlglot and require exactly one statement."""
    try:
        statements = [s for s in sqlglot.parse(query, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as e:
        first_word = _first_word(query)
        if first_word and first_word not in _SELECT_LIKE_STARTS:
            raise QueryRejected(
                "not_select", f"Only SELECT queries are allowed (got {first_word.upper()})."
            ) from None
        raise QueryRejected("parse_error", f"Could not parse query: {clean_message(str(e))}") from None
    if not statements:
        raise QueryRejected("parse_error", "Empty query: write one SELECT statement.")
    if len(statements) > 1:
        raise QueryRejected(
            "multiple_statements",
            f"Only one statement is allowed (found {len(statements)}).",
        )
    return statements[0]


def _first_word(query: str) -> str:
    """First token of the query after leading whitespace and comments, lower case."""
    rest = query[_LEADING_COMMENTS.match(query).end():]
    if rest.startswith("("):
        return "("
    match = re.match(r"\w+", rest)
    return match.group(0).lower() if match else ""


def _check_statement_type(statement: exp.Expression, query: str) -> None:
    """The statement must be a SELECT / set operation / WITH ... SELECT."""
    if not isinstance(statement, exp.Query):
        # sqlglot parses some statements loosely (LOAD/CALL/RESET become a
        # generic Command, a bare CHECKPOINT a column): name the first word.
        kind = (_first_word(query) or statement.key).upper()
        raise QueryRejected("not_select", f"Only SELECT queries are allowed (got {kind}).")
    for node in statement.walk():
        if isinstance(node, FORBIDDEN_NODE_TYPES):
            raise QueryRejected(
                "not_select",
                f"Only read-only SELECT queries are allowed ({node.key.upper()} is not).",
            )


def _function_names(func: exp.Func) -> set[str]:
    """All lower-case names under which a parsed function may be allowlisted."""
    if isinstance(func, (exp.Anonymous, exp.AnonymousAggFunc)):
        return {func.name.lower()}
    return {func.key} | {name.lower() for name in type(func).sql_names()}


def _display_name(func: exp.Func, query: str | None = None) -> str:
    """The function's name as the agent wrote it where sqlglot recorded its
    position (sqlglot normalises e.g. lpad -> PAD, string_agg -> GROUP_CONCAT)."""
    start, end = func.meta.get("start"), func.meta.get("end")
    if query is not None and isinstance(start, int) and isinstance(end, int):
        written = query[start : end + 1]
        if re.fullmatch(r"\w+", written):
            return written
    if query is not None and not isinstance(func, exp.Anonymous):
        # No position recorded: find a called name in the text that sqlglot
        # parses to the same node type (best effort, error path only).
        for match in re.finditer(r"([A-Za-z_]\w*)\s*\(", query):
            try:
                parsed = sqlglot.parse_one(f"SELECT {match.group(1)}(x, 'y')", read="duckdb")
            except Exception:
                continue
            if type(parsed.find(exp.Func)) is type(func):
                return match.group(1)
    if isinstance(func, (exp.Anonymous, exp.AnonymousAggFunc)):
        return func.name
    return func.sql_name().lower()


def _check_functions(statement: exp.Expression, query: str) -> None:
    """Every function call must be allowlisted and unqualified."""
    for func in statement.find_all(exp.Func):
        name = _display_name(func, query)
        if not (_function_names(func) & ALLOWED_FUNCTIONS):
            raise QueryRejected(
                "forbidden_function",
                f"Function {name}() is not allowed. Only ordinary scalar, aggregate and "
                "window functions (e.g. sum, count, round, replace, cast, lower) may be "
                "used; file, system and table functions are blocked.",
            )
        if isinstance(func.parent, exp.Dot) and func.parent.expression is func:
            raise QueryRejected(
                "forbidden_function",
                f"Schema-qualified function calls are not allowed ({func.parent.sql('duckdb')}).",
            )



def _check_tables(statement: exp.Expression, schema: str, table: str) -> None:
    """Every real table reference must be the one allowed table."""
    allowed = f'"{table}"'
    names = cte_names(statement)
    for node in statement.find_all(exp.Table):
        if is_cte_reference(node, names):
            continue
        if not isinstance(node.this, exp.Identifier):
            raise QueryRejected(
                "forbidden_table",
                f"Table functions are not allowed in FROM; only the table {allowed} may be queried.",
            )
        db = node.args.get("db")
        name_ok = node.name.lower() == table.lower()
        schema_ok = db is None or db.name.lower() == schema.lower()
        if not (name_ok and schema_ok and not node.args.get("catalog")):
            shown = ".".join(p.sql(dialect="duckdb") for p in node.parts)
            raise QueryRejected(
                "forbidden_table",
                f"Table {shown} is not allowed: only the table {allowed} may be queried.",
            )


def _string_literal(node: exp.Expression | None) -> str | None:
    """The value of a string literal (or NULL -> ''), else None."""
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    if node is None or isinstance(node, exp.Null):
        return ""
    return None


def _check_string_growth(statement: exp.Expression, query: str) -> None:
    """Bound how much replace()/regexp_replace() can grow a string.

    Nested replacements multiply a value's size within one expression
    evaluation, which DuckDB can neither interrupt nor count against
    memory_limit.  The replacement must therefore be a string literal, and the
    product of each call's worst-case growth factor must stay small:

    * replace(s, from, to): output <= len(s) * ceil(len(to) / len(from)).
    * regexp_replace(s, pattern, to, flags): each match (possibly empty) is
      replaced by len(to) literal chars plus one copy of (part of) the match per
      back-reference, so output <= len(s) * (max(refs, 1) + literal chars) with
      the 'g' flag; without it only one match is replaced.
    """
    growth = 1
    for node in statement.find_all(exp.Replace, exp.RegexpReplace):
        replacement = _string_literal(node.args.get("replacement"))
        if replacement is None:
            raise QueryRejected(
                "resource_limit",
                f"The replacement argument of {_display_name(node, query)}() must be a string literal.",
            )
        if isinstance(node, exp.Replace):
            pattern = _string_literal(node.expression)
            if not replacement or (pattern and len(replacement) <= len(pattern)):
                factor = 1
            else:
                factor = math.ceil(len(replacement) / len(pattern)) if pattern else 1 + len(replacement)
        else:
            refs = len(re.findall(r"\\[0-9]", replacement))
            literal_chars = len(re.sub(r"\\[0-9]", "", replacement))
            flags = _string_literal(node.args.get("modifiers"))
            if flags is None or "g" in flags:  # non-literal flags: assume global
                factor = max(refs, 1) + literal_chars
            else:
                factor = max(refs, 1)  # plus a constant: one match replaced
        growth *= factor
        if growth > MAX_STRING_GROWTH:
            raise QueryRejected(
                "resource_limit",
                "replace()/regexp_replace() calls could grow strings too much "
                f"(worst case x{growth}, limit x{MAX_STRING_GROWTH}); use shorter replacements.",
            )


def _outer_selects(node: exp.Expression) -> list[exp.Select]:
    """The SELECTs whose projections form the query's output."""
    if isinstance(node, exp.Subquery):
        return _outer_selects(node.this)
    if isinstance(node, exp.SetOperation):
        return _outer_selects(node.left) + _outer_selects(node.right)
    if isinstance(node, exp.Select):
        return [node]
    return []


def _is_aggregate(func: exp.Func) -> bool:
    """True for aggregate functions, not counting window functions (sqlglot
    derives rank(), lag(), ... from AggFunc) or aggregates used with OVER."""
    names = _function_names(func)
    if names & WINDOW_FUNCTIONS or isinstance(func.parent, exp.Window):
        return False
    return isinstance(func, exp.AggFunc) or bool(names & AGGREGATE_FUNCTIONS)


def _check_filtered(statement: exp.Expression) -> None:
    """Reject SELECT * and queries with no WHERE / HAVING / LIMIT / aggregate."""
    for select in _outer_selects(statement):
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                raise QueryRejected("unfiltered_query", UNFILTERED_MESSAGE)
    for query in statement.find_all(exp.Select, exp.SetOperation):
        if any(query.args.get(k) for k in ("where", "having", "qualify", "limit", "fetch")):
            return
    if any(_is_aggregate(func) for func in statement.find_all(exp.Func)):
        return
    raise QueryRejected("unfiltered_query", UNFILTERED_MESSAGE)


def quoting_example(columns: Iterable[str]) -> str | None:
    """The first of `columns` that SQL must double-quote, quoted (`"2024_in_millions"`), or None when every one is a
    plain word: the example in a table's note and in an unknown-column error. Always one of the table's own columns:
    a fixed example (`"2024"`) was copied verbatim by a small policy into queries on tables that have no such column
    (held-out transcripts: `SELECT "2024"` on tables with `year_ended_december_31_2014`, `application_software`)."""
    return next((quote_column(c) for c in columns if quote_column(c) != c), None)


def quote_literal(text: str) -> str:
    """`text` as an SQL string literal (`'it''s'`)."""
    return "'" + text.replace("'", "''") + "'"


def quote_column(name: str) -> str:
    """`name` as SQL writes it: bare when a plain identifier, else in double quotes (`"2024"`)."""
    return name if _SIMPLE_IDENTIFIER.match(name) else '"' + name.replace('"', '""') + '"'


def _check_columns(statement: exp.Expression, columns: list[str]) -> None:
    """Reject column names that are neither table columns nor query-defined names.

    Lenient on purpose: any alias, CTE/derived-table column list or table alias
    defined anywhere in the query counts as known.
    """
    known = {c.lower() for c in columns}
    for alias in statement.find_all(exp.Alias):
        known.add(alias.alias.lower())
    for table_alias in statement.find_all(exp.TableAlias):
        known.add(table_alias.name.lower())
        known.update(col.name.lower() for col in table_alias.columns)
    for node in statement.find_all(exp.Table):
        known.add(node.name.lower())
    for column in statement.find_all(exp.Column):
        if isinstance(column.this, exp.Star) or column.name.lower() in known:
            continue
        available = ", ".join(quote_column(c) for c in columns)
        hint = ""
        if column.this.args.get("quoted") and not column.table:
            hint = " (Use single quotes for string literals: 'text'; double quotes are for column names.)"
        quoted = quoting_example(columns)
        quoting = f" Column names that are not plain words must be double-quoted, e.g. SELECT {quoted}." if quoted else ""
        raise QueryRejected(
            "unknown_column",
            f'Unknown column "{column.name}". Available columns: {available}.{quoting}{hint}',
        )


