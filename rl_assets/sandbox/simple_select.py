"""Fast path of the SQL sandbox: a token-level recogniser for the simple queries agents write most.

Most agent queries look like ``SELECT "2024" FROM revenue WHERE "segment" = 'Americas'`` or
``SELECT count(*) FROM t WHERE x LIKE '%cash%' LIMIT 5``. Validating them with the full sqlglot
pipeline (parse, walk, regenerate) costs ~100-200 µs, more than DuckDB needs to run them.
:func:`recognise` decides with DuckDB's own tokenizer (the scanner its parser uses, ~1 µs) whether a
query lies in a small subset that is safe *by construction*, and if so returns the SQL to execute.

It never rejects. Anything outside the subset -- or anything it is unsure about -- returns ``None``
and goes through the full validation in :mod:`rl_assets.sandbox.validation`, which also writes every error
message. So the fast path changes speed, not behaviour: the test suite checks that every query it
accepts is also accepted by the full validator and gives the same result.

The subset (every token must fit it):

* exactly one ``SELECT``, as the first token; exactly one ``FROM``, at parenthesis depth 0,
  immediately followed by the allowed table's name (bare or double-quoted, case-insensitive) and
  then by the end of the query or ``WHERE`` / ``GROUP`` / ``HAVING`` / ``ORDER`` / ``LIMIT`` (so no
  joins, no comma joins, no aliases, no subqueries, no table functions, no set operations);
* words are the plain keywords below, calls of the allowlisted functions below, type names inside
  ``CAST(... AS type)``, select-list aliases (``expr AS name``), or the table's columns (bare or
  double-quoted); a keyword stands before ``(`` only where that is syntax (``IN (...)``, ``AND (...)``);
  anything else (an unknown column, ``OVER``, ``JOIN``, ``WITH``, ``UNION``, ``first(...)``, ...)
  means "not in the subset";
* operators are comparisons, ``+ - * /``, parentheses and commas; ``*`` only as multiplication or
  in ``count(*)`` (never a projection); no comments, ``;``, ``::``, ``||``, ``.``, brackets;
* string literals are plain single-quoted ones, numbers plain decimals;
* the query is filtered like the full validator requires: a ``WHERE``, ``HAVING`` or ``LIMIT``,
  or an aggregate call;
* a trailing ``LIMIT n`` is the last clause and ``n`` a plain integer.

The SQL returned is the query text with the table token replaced by ``"schema"."table"`` and the
``LIMIT`` capped at (or appended as) ``max_rows``. Plain Python; no dagster import.
"""

from __future__ import annotations

import functools
import re

import duckdb

__all__ = ["recognise"]

KEYWORDS = frozenset(
    {
        "SELECT", "DISTINCT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "ORDER", "ASC", "DESC",
        "NULLS", "FIRST", "LAST", "LIMIT", "AND", "OR", "NOT", "AS", "IN", "LIKE", "ILIKE",
        "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "CASE", "WHEN", "THEN", "ELSE", "END",
    }
)
# keywords that may stand before "(" as syntax, never as a function name (FIRST and LAST may not: first()
# and last() are DuckDB aggregates)
PAREN_KEYWORDS = frozenset(
    {"SELECT", "DISTINCT", "WHERE", "HAVING", "AND", "OR", "NOT", "IN", "BETWEEN", "CASE", "WHEN", "THEN",
     "ELSE", "LIKE", "ILIKE", "BY"}
)
AGGREGATES = frozenset({"sum", "avg", "min", "max", "count", "median"})
SCALARS = frozenset(
    {"round", "abs", "coalesce", "nullif", "lower", "upper", "trim", "length", "cast", "try_cast"}
)
FUNCTIONS = AGGREGATES | SCALARS
TYPES = frozenset(
    {"DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "INTEGER", "INT", "BIGINT", "VARCHAR", "TEXT"}
)
OPERATORS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "(", ")", ","})
AFTER_TABLE = frozenset({"WHERE", "GROUP", "HAVING", "ORDER", "LIMIT"})
MAX_DEPTH = 32

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_INTEGER = re.compile(r"[0-9]{1,9}\Z")
_ASCII_SPACE = " \t\r\n"

_T = duckdb.token_type
_IDENT, _NUM, _STR, _OP, _KW, _COMMENT = (
    _T.identifier, _T.numeric_const, _T.string_const, _T.operator, _T.keyword, _T.comment,
)

# token classes used below
_WORD_T, _QUOTED, _NUMERIC, _STRING, _OPERATOR = range(5)


def _tokens(query: str) -> list[tuple[int, int, str]] | None:
    """(start, class, text) per token, or None if anything is unusual.

    DuckDB reports only token starts; a token's text is everything up to the next start minus
    trailing ASCII whitespace. Any other character in that gap (or before the first token) means
    the scanner skipped something this recogniser does not understand: give up.
    """
    try:
        raw = duckdb.tokenize(query)
    except Exception:
        return None
    if not raw or query[: raw[0][0]].strip(_ASCII_SPACE):
        return None
    out: list[tuple[int, int, str]] = []
    for i, (start, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(query)
        text = query[start:end].rstrip(_ASCII_SPACE)
        if not text:
            return None
        if kind == _KW or (kind == _IDENT and text[0] != '"'):
            if not _WORD.match(text):
                return None
            cls = _WORD_T
        elif kind == _IDENT:
            if not _closed(text, '"'):
                return None
            cls = _QUOTED
        elif kind == _NUM:
            if not _NUMBER.match(text):
                return None
            cls = _NUMERIC
        elif kind == _STR:
            if not _closed(text, "'"):
                return None
            cls = _STRING
        elif kind == _OP:
            if text not in OPERATORS:
                return None
            cls = _OPERATOR
        else:  # comments and anything new
            return None
        out.append((start, cls, text))
    return out


def _ends_value(tok: tuple[int, int, str]) -> bool:
    """Can this token end an operand (so that a following ``*`` or ``+`` is binary)?"""
    _, cls, text = tok
    return cls in (_QUOTED, _NUMERIC, _STRING) or text == ")" or (cls == _WORD_T and text.upper() not in KEYWORDS)


@functools.lru_cache(maxsize=4096)
def _lower_names(columns: tuple[str, ...]) -> frozenset[str]:
    return frozenset(c.lower() for c in columns)


def _closed(text: str, quote: str) -> bool:
    """A complete quoted token: starts and ends with ``quote``, inner quotes doubled."""
    return (
        len(text) >= 2 and text[0] == quote and text[-1] == quote
        and quote not in text[1:-1].replace(quote * 2, "")
    )


def _unquote(text: str) -> str:
    return text[1:-1].replace('""', '"')


def recognise(query: str, schema: str, table: str, columns: list[str] | tuple[str, ...], max_rows: int) -> str | None:
    """DuckDB SQL for ``query`` if it is in the simple subset (see module doc), else None.

    ``table`` is the one allowed table in ``schema``; ``columns`` its column names; the SQL returned
    yields at most ``max_rows`` rows.
    """
    toks = _tokens(query)
    if toks is None or len(toks) < 4:
        return None
    known = _lower_names(tuple(columns))
    aliases: set[str] = set()
    n = len(toks)
    stack: list[str] = []  # "cast" | "call" | "group" per open parenthesis
    selects = froms = 0
    table_tok = limit_tok = -1
    filtered = aggregate = False
    pending_call: str | None = None
    i = 0
    while i < n:
        _, cls, text = toks[i]
        nxt = toks[i + 1] if i + 1 < n else None
        if cls == _OPERATOR:
            if text == "(":
                stack.append(pending_call or "group")
                pending_call = None
                if len(stack) > MAX_DEPTH:
                    return None
            elif text == ")":
                if not stack:
                    return None
                stack.pop()
            elif text == "+" and not _ends_value(toks[i - 1]):
                return None  # unary plus (the full validator drops it, renaming the output column)
            elif text == "*":
                if i == 0:
                    return None
                prev = toks[i - 1]
                if prev[2] == "(" and nxt is not None and nxt[2] == ")" and i >= 2 and toks[i - 2][2].lower() == "count":
                    pass  # count(*)
                elif not _ends_value(prev) or nxt is None:
                    return None  # a star projection (SELECT *, x, *) or a dangling operator
            i += 1
            continue
        if cls in (_NUMERIC, _STRING):
            i += 1
            continue
        word = text.lower() if cls == _WORD_T else None
        upper = text.upper() if cls == _WORD_T else None
        if word is None and nxt is not None and nxt[2] == "(":
            return None  # "name"(...) calls a function, whatever the quotes
        if word is not None and nxt is not None and nxt[2] == "(":
            if word in FUNCTIONS:
                pending_call = "cast" if word in ("cast", "try_cast") else "call"
                aggregate = aggregate or word in AGGREGATES
                i += 1
                continue
            if upper not in PAREN_KEYWORDS:  # any other call (also first(...), last(...)): full validator
                return None
            # a keyword before a parenthesis (IN (...), AND (...)): handled below
        if upper is not None and upper in KEYWORDS:
            if upper == "SELECT":
                selects += 1
                if i != 0 or selects > 1:
                    return None
            elif upper == "FROM":
                froms += 1
                if froms > 1 or stack or nxt is None:
                    return None
                name = nxt[2].lower() if nxt[1] == _WORD_T else _unquote(nxt[2]).lower() if nxt[1] == _QUOTED else None
                if name != table.lower():
                    return None
                after = toks[i + 2] if i + 2 < n else None
                if after is not None and not (after[1] == _WORD_T and after[2].upper() in AFTER_TABLE):
                    return None
                table_tok = i + 1
                i += 2
                continue
            elif upper in ("WHERE", "HAVING"):
                if stack:
                    return None
                filtered = True
            elif upper == "LIMIT":
                # LIMIT <integer> must end the query
                if stack or i + 2 != n or nxt is None or nxt[1] != _NUMERIC or not _INTEGER.match(nxt[2]):
                    return None
                limit_tok = i + 1
                filtered = True
                i += 2
                continue
            elif upper == "AS":
                if nxt is None:
                    return None
                if stack and stack[-1] == "cast":
                    if not (nxt[1] == _WORD_T and nxt[2].upper() in TYPES):
                        return None
                    after = toks[i + 2] if i + 2 < n else None
                    if after is None or after[2] != ")":
                        return None  # DECIMAL(10, 2) and friends: full validator
                    i += 2
                    continue
                if stack or froms or nxt[1] not in (_WORD_T, _QUOTED):
                    return None  # aliases only in the select list
                alias = nxt[2] if nxt[1] == _WORD_T else _unquote(nxt[2])
                if nxt[1] == _WORD_T and alias.upper() in KEYWORDS:
                    return None
                aliases.add(alias.lower())
                i += 2
                continue
            i += 1
            continue
        # a column (or an alias defined earlier)
        name = word if word is not None else _unquote(text).lower()
        if name not in known and name not in aliases:
            return None
        i += 1
    if selects != 1 or froms != 1 or stack or table_tok < 0:
        return None
    if not (filtered or aggregate):
        return None
    start, _, table_text = toks[table_tok]
    qualified = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
    if limit_tok >= 0:
        limit_start, _, limit_text = toks[limit_tok]
        limit = min(int(limit_text), max_rows)
        return query[:start] + qualified + query[start + len(table_text) : limit_start] + str(limit)
    body = query.rstrip(_ASCII_SPACE)
    return body[:start] + qualified + body[start + len(table_text) :] + f" LIMIT {int(max_rows)}"
