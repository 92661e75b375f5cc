"""Hardened, read-only SQL execution layer for the RL tool environment.

An LLM agent answers questions about one financial table at a time by writing
SQL.  This module validates each agent query with sqlglot, rewrites it so that it
can only touch the one table it is about, and runs it on a locked-down DuckDB
connection with row, character, time and memory limits.  It never raises: every
problem becomes a :class:`QueryResult` with ``ok=False``, an ``error_kind`` and a
message meant for the agent.

Defence in depth, outermost first:

1. :func:`open_world_db` opens the world database read-only with external access,
   extension loading and disk spilling disabled, then locks the configuration
   so that no later statement can loosen it.
2. :func:`run_query` parses the query with sqlglot and rejects anything that is
   not exactly one SELECT over the allowed table using allowlisted functions.
3. The raw query text is not executed: the *validated AST* is regenerated as
   DuckDB SQL (without comments) with the table fully qualified, bounded by a
   ``LIMIT`` and run under a wall-clock timer that interrupts it.

Fast path: the simple queries agents write most (one table, plain keywords,
a few allowlisted functions, known columns, no comments) are recognised from
DuckDB's own token stream by :mod:`rl_assets.simple_select`, which is safe by
construction and returns the query text with the table qualified and a LIMIT;
it never rejects, so everything else (and every error message) still goes
through the sqlglot validation. Same limits, timer and execution for both.

Plain Python on purpose: nothing here imports dagster.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from rl_assets import simple_select

__all__ = ["SandboxLimits", "QueryResult", "ERROR_KINDS", "open_world_db", "run_query"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one agent query."""

    max_rows: int = 50  # rows returned to the agent; more -> truncated + note
    max_chars: int = 4000  # characters of rendered output (``len(text)`` never exceeds it)
    timeout_s: float = 2.0  # wall time; a runaway query is interrupted
    memory_limit: str = "256MB"  # DuckDB memory_limit (used by open_world_db)
    max_query_chars: int = 4000  # longer query texts are rejected unparsed


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

UNFILTERED_MESSAGE = (
    "Only filtered queries are allowed: add a WHERE clause, LIMIT, or aggregate; "
    "SELECT * is not allowed"
)

# ---------------------------------------------------------------------------
# Function allowlist
# ---------------------------------------------------------------------------
# Names are lower case and matched against what sqlglot parsed: the function
# name for unknown ("anonymous") functions, otherwise the sqlglot class key and
# all of the class's SQL names (e.g. exp.Length answers to length, len,
# char_length).  Anything else -- read_*, glob, *_scan, query, getenv,
# current_setting, duckdb_*, pragma_*, sniff_csv, ... -- is rejected.
#
# Deliberately NOT allowed although harmless-looking, because they can build
# huge values inside a single (uninterruptible) expression evaluation, or in
# DuckDB's constant folding at plan time, where neither con.interrupt() nor
# memory_limit reaches (measured: nested replace() growing a literal reached
# 13 GB RSS and ignored the interrupt for ~50 s):
#   repeat, lpad/rpad, format/printf, range/generate_series, list_* helpers,
#   unnest, levenshtein & other quadratic fuzzy matchers, and the aggregates
#   that concentrate many rows into one value (string_agg, group_concat,
#   listagg, list, array_agg), whose output could then be amplified.
# replace()/regexp_replace() are allowed but their growth is bounded, see
# _check_string_growth.
AGGREGATE_FUNCTIONS = frozenset(
    {
        "count", "count_if", "countif", "sum", "avg", "mean", "min", "max",
        "median", "mode", "quantile", "quantile_cont", "quantile_disc",
        "percentile_cont", "percentile_disc", "stddev", "stdev", "stddev_pop",
        "stddev_samp", "variance", "variance_pop", "variance_samp", "var_pop",
        "var_samp", "first", "last", "any_value", "arg_min", "argmin", "min_by",
        "arg_max", "argmax", "max_by", "bool_and", "bool_or", "logical_and",
        "logical_or", "product", "corr", "covar_pop", "covar_samp",
        "approx_distinct", "approx_count_distinct", "fsum", "kahan_sum",
        "sumkahan",
    }
)
WINDOW_FUNCTIONS = frozenset(
    {
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile",
        "lag", "lead", "first_value", "last_value", "nth_value",
    }
)
SCALAR_FUNCTIONS = frozenset(
    {
        # operators and syntax that sqlglot models as functions
        "and", "or", "xor", "collate", "array",
        # conditionals / casts / predicates
        "case", "if", "iif", "iff", "coalesce", "ifnull", "nvl", "nullif",
        "greatest", "least", "cast", "try_cast", "typeof", "exists",
        # arithmetic
        "abs", "round", "round_even", "roundbankers", "floor", "ceil", "ceiling",
        "trunc", "truncate", "sign", "signum", "sqrt", "cbrt", "pow", "power",
        "exp", "ln", "log", "log2", "log10", "mod", "pi", "isnan", "is_nan",
        "isinf", "is_inf", "isfinite", "even",
        # strings (none of these can grow a value beyond its inputs, except
        # concat-style functions, which grow linearly in the query length)
        "lower", "lcase", "upper", "ucase", "length", "len", "strlen",
        "char_length", "character_length", "trim", "ltrim", "rtrim",
        "substring", "substr", "left", "right", "concat", "concat_ws",
        "contains", "starts_with", "startswith", "ends_with", "endswith",
        "prefix", "suffix", "position", "strpos", "str_position", "instr",
        "split_part", "regexp_extract", "regexp_matches", "regexp_full_match",
        "regexp_like", "regexp_ilike", "regexpilike", "reverse", "translate", "strip_accents", "ascii", "chr",
        "replace", "regexp_replace", "md5", "hash",
        # dates
        "current_date", "today", "current_timestamp", "now", "date_part", "datepart", "extract", "year",
        "month", "day", "quarter", "date_trunc", "datetrunc", "timestamp_trunc",
        "strftime", "time_to_str", "strptime", "try_strptime", "str_to_time",
        "date_diff", "datediff", "make_date", "date_from_parts", "epoch",
        "time_to_unix",
    }
)
ALLOWED_FUNCTIONS = AGGREGATE_FUNCTIONS | WINDOW_FUNCTIONS | SCALAR_FUNCTIONS

# Product of the worst-case growth factors of all replace()/regexp_replace()
# calls in one query (see _check_string_growth).  Ordinary cleaning such as
# replace(x, '$', '') or regexp_replace(x, '^\((.*)\)$', '-\1') has factor 1-2.
MAX_STRING_GROWTH = 4

# Statement / clause types that must not appear anywhere in an agent query.
_FORBIDDEN_NODE_TYPES = tuple(
    getattr(exp, name)
    for name in (
        "DDL", "DML", "Insert", "Update", "Delete", "Merge", "Create", "Drop",
        "Alter", "Command", "Copy", "Set", "Pragma", "Attach", "Detach", "Into",
        "Use", "Transaction", "Commit", "Rollback", "Install", "Describe",
        "Show", "Summarize", "Cache", "Uncache", "LoadData", "Refresh",
        "Analyze", "Kill",
    )
    if hasattr(exp, name)
)

# First words that start a read query; used to tell "syntax error in a SELECT"
# from "some other statement sqlglot cannot parse" (e.g. EXPORT DATABASE).
_SELECT_LIKE_STARTS = frozenset({"select", "with", "from", "(", "values", "table"})

# Prefix for the names CTEs are renamed to (see _rewrite).
_CTE_PREFIX = "_sbx_cte_"

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SIMPLE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


class _Rejected(Exception):
    """Raised inside validation; becomes a QueryResult(ok=False)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------
def open_world_db(
    path: str | os.PathLike, limits: SandboxLimits = SandboxLimits()
) -> duckdb.DuckDBPyConnection:
    """Open a world DuckDB file read-only and hardened for agent queries.

    * ``read_only=True``: no writes, no WAL file.
    * ``enable_external_access=false``: no file system or network access from
      SQL (read_csv, COPY, ATTACH, httpfs, ...).
    * extension auto-install/auto-load and community extensions disabled.
    * ``threads=1`` and ``memory_limit`` bound CPU and (buffer-managed) memory.
    * ``temp_directory=''`` and ``max_temp_directory_size='0B'``: nothing spills
      to disk; over-large operators fail with an out-of-memory error instead.
    * ``lock_configuration=true`` is set LAST, in a separate statement, so no
      later ``SET``/``RESET`` can undo any of the above.

    All keys were checked against DuckDB 2.0.1's ``duckdb_settings()``.
    """
    config = {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "threads": 1,
        "memory_limit": limits.memory_limit,
        "temp_directory": "",
        "max_temp_directory_size": "0B",
        # The world's tables are tiny: the optimizer costs more than it saves (about half of a
        # typical query's execution time) and results are identical without it.
        "enable_optimizer": False,
    }
    con = duckdb.connect(str(os.fspath(path)), read_only=True, config=config)
    try:
        # DuckDB caches database instances per process: opening the same file
        # again with the same config returns the already-locked instance, where
        # SET lock_configuration itself fails.  (A different config is refused
        # by DuckDB with a ConnectionException.)
        if not _setting(con, "lock_configuration"):
            con.execute("SET lock_configuration = true")
        if _setting(con, "enable_external_access") or not _setting(con, "lock_configuration"):
            raise RuntimeError("DuckDB connection is not hardened as expected")
    except BaseException:
        con.close()
        raise
    return con


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> Any:
    return con.execute("SELECT current_setting(?)", [name]).fetchone()[0]


class ResultCache:
    """A thread-safe LRU cache of query results for one read-only database.

    The world is immutable, so the same query on the same table always gives the same result:
    ok results and validation errors are cached; timeouts and resource errors (which depend on
    the moment) are not. RL rollouts repeat queries a lot (a GRPO group asks the same question
    many times), and a hit skips parsing and execution entirely.
    """

    def __init__(self, max_entries: int = 50_000):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[tuple, QueryResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> QueryResult | None:
        with self._lock:
            result = self._data.get(key)
            if result is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return result

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def put(self, key: tuple, result: QueryResult) -> None:
        if result.error_kind in _UNCACHEABLE:
            return
        with self._lock:
            self._data[key] = result
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)


_UNCACHEABLE = frozenset({"timeout", "resource_limit", "execution_error"})


def run_query(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    query: str,
    limits: SandboxLimits = SandboxLimits(),
    columns: list[str] | tuple[str, ...] | None = None,
    cache: ResultCache | None = None,
) -> QueryResult:
    """Validate and execute an agent query against exactly one table ``schema.table``.

    ``columns`` (optional) are the table's column names; when given, references
    to other columns are rejected early with a helpful list. ``cache`` (optional)
    memoises results of this (read-only) database. Never raises.
    """
    columns = tuple(columns) if columns is not None else None
    key = (schema, table, query, limits, columns)
    if cache is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    result = _run_query(con, schema, table, query, limits, columns)
    if cache is not None:
        cache.put(key, result)
    return result


def _run_query(con, schema, table, query, limits, columns, fast_path: bool = True) -> QueryResult:
    validated = _validate_cached(query, schema, table, limits, columns, fast_path)
    if validated[0] == "error":
        return _error(validated[1], validated[2], limits)
    _, sql, cte_names, fast = validated
    try:
        result = _execute(con, sql, limits, dict(cte_names))
    except Exception as e:  # defensive: _execute already maps DuckDB errors
        result = _error("execution_error", f"Query failed: {_clean_message(str(e))}", limits)
    if fast and result.error_kind == "execution_error":
        # The fast path checks tokens, not grammar: a query it passed may still be malformed
        # (e.g. "WHERE x ="). Answer exactly as without the fast path (e.g. parse_error).
        return _run_query(con, schema, table, query, limits, columns, fast_path=False)
    return result


@functools.lru_cache(maxsize=20_000)
def _validate_cached(
    query: Any, schema: str, table: str, limits: SandboxLimits, columns: tuple[str, ...] | None,
    fast_path: bool = True,
) -> tuple:
    """("ok", sql, cte_names, fast) or ("error", kind, message); memoised (validation is pure)."""
    try:
        sql, cte_names, fast = _validate_and_rewrite(query, schema, table, limits, columns, fast_path)
    except _Rejected as rejected:
        return ("error", rejected.kind, rejected.message)
    except RecursionError:
        return ("error", "parse_error", "Query is nested too deeply.")
    except Exception as e:  # defensive: a sqlglot bug must not escape
        return ("error", "parse_error", f"Could not analyse query: {_clean_message(str(e))}")
    return ("ok", sql, tuple(sorted(cte_names.items())), fast)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
def _validate_and_rewrite(
    query: Any,
    schema: str,
    table: str,
    limits: SandboxLimits,
    columns: list[str] | tuple[str, ...] | None,
    fast_path: bool = True,
) -> tuple[str, dict[str, str], bool]:
    """Run all checks; return (DuckDB SQL to run, {renamed CTE: original name}, fast path used).

    ``fast_path=False`` skips :mod:`rl_assets.simple_select`.
    """
    if not isinstance(query, str):
        raise _Rejected("parse_error", "Query must be a string.")
    if len(query) > limits.max_query_chars:
        raise _Rejected(
            "query_too_long",
            f"Query is too long ({len(query)} characters; the limit is {limits.max_query_chars}).",
        )
    if _CONTROL_CHARS.search(query):
        raise _Rejected("parse_error", "Query contains control characters (e.g. NUL bytes).")

    if fast_path and columns is not None:
        # the common simple queries: safe by construction, no sqlglot needed (never rejects)
        fast = simple_select.recognise(query, schema, table, columns, limits.max_rows + 1)
        if fast is not None:
            return fast, {}, True

    statement = _parse_single_statement(query)
    _check_statement_type(statement, query)
    _check_functions(statement, query)
    _check_tables(statement, schema, table)
    _check_string_growth(statement, query)
    _check_filtered(statement)
    if columns is not None:
        _check_columns(statement, columns)

    rewritten, cte_names = _rewrite(statement, schema, table)
    # comments=False: comments are dropped so that nothing the agent wrote in a
    # comment (e.g. "*/ ; DROP ...") can reach DuckDB as code.
    return _bounded_sql(rewritten, limits.max_rows + 1), cte_names, False


def _bounded_sql(statement: exp.Expression, max_rows: int) -> str:
    """SQL that returns at most max_rows rows.

    A plain SELECT gets (or keeps a smaller literal) LIMIT directly, which is much cheaper in
    DuckDB than a wrapping subquery; anything else (UNION, a non-literal LIMIT) is wrapped.
    """
    if isinstance(statement, exp.Select):
        limit = statement.args.get("limit")
        current = limit.expression if isinstance(limit, exp.Limit) else None
        if limit is None or (
            isinstance(current, exp.Literal) and current.is_int and int(current.this) > max_rows
        ):
            statement.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
            return statement.sql(dialect="duckdb", comments=False)
        if isinstance(current, exp.Literal) and current.is_int:
            return statement.sql(dialect="duckdb", comments=False)
    return f"SELECT * FROM ({statement.sql(dialect='duckdb', comments=False)}) AS q LIMIT {int(max_rows)}"


def _parse_single_statement(query: str) -> exp.Expression:
    """Parse with sqlglot and require exactly one statement."""
    try:
        statements = [s for s in sqlglot.parse(query, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as e:
        first_word = _first_word(query)
        if first_word and first_word not in _SELECT_LIKE_STARTS:
            raise _Rejected(
                "not_select", f"Only SELECT queries are allowed (got {first_word.upper()})."
            ) from None
        raise _Rejected("parse_error", f"Could not parse query: {_clean_message(str(e))}") from None
    if not statements:
        raise _Rejected("parse_error", "Empty query: write one SELECT statement.")
    if len(statements) > 1:
        raise _Rejected(
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
        raise _Rejected("not_select", f"Only SELECT queries are allowed (got {kind}).")
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODE_TYPES):
            raise _Rejected(
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
            raise _Rejected(
                "forbidden_function",
                f"Function {name}() is not allowed. Only ordinary scalar, aggregate and "
                "window functions (e.g. sum, count, round, replace, cast, lower) may be "
                "used; file, system and table functions are blocked.",
            )
        if isinstance(func.parent, exp.Dot) and func.parent.expression is func:
            raise _Rejected(
                "forbidden_function",
                f"Schema-qualified function calls are not allowed ({func.parent.sql('duckdb')}).",
            )


def _cte_names(statement: exp.Expression) -> set[str]:
    """Lower-case names of all CTEs defined anywhere in the statement."""
    return {cte.alias.lower() for cte in statement.find_all(exp.CTE) if cte.alias}


def _is_cte_reference(node: exp.Table, cte_names: set[str]) -> bool:
    # CTE scoping is approximated generously here (any CTE name anywhere);
    # _rewrite renames CTEs to unique names, so a reference that DuckDB would
    # NOT resolve to the CTE points at a non-existent table and fails closed.
    return (
        isinstance(node.this, exp.Identifier)
        and not node.args.get("db")
        and not node.args.get("catalog")
        and node.name.lower() in cte_names
    )


def _check_tables(statement: exp.Expression, schema: str, table: str) -> None:
    """Every real table reference must be the one allowed table."""
    allowed = f'"{table}"'
    cte_names = _cte_names(statement)
    for node in statement.find_all(exp.Table):
        if _is_cte_reference(node, cte_names):
            continue
        if not isinstance(node.this, exp.Identifier):
            raise _Rejected(
                "forbidden_table",
                f"Table functions are not allowed in FROM; only the table {allowed} may be queried.",
            )
        db = node.args.get("db")
        name_ok = node.name.lower() == table.lower()
        schema_ok = db is None or db.name.lower() == schema.lower()
        if not (name_ok and schema_ok and not node.args.get("catalog")):
            shown = ".".join(p.sql(dialect="duckdb") for p in node.parts)
            raise _Rejected(
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
            raise _Rejected(
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
            raise _Rejected(
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
                raise _Rejected("unfiltered_query", UNFILTERED_MESSAGE)
    for query in statement.find_all(exp.Select, exp.SetOperation):
        if any(query.args.get(k) for k in ("where", "having", "qualify", "limit", "fetch")):
            return
    if any(_is_aggregate(func) for func in statement.find_all(exp.Func)):
        return
    raise _Rejected("unfiltered_query", UNFILTERED_MESSAGE)


def _quote_column(name: str) -> str:
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
        available = ", ".join(_quote_column(c) for c in columns)
        hint = ""
        if column.this.args.get("quoted") and not column.table:
            hint = " (Use single quotes for string literals: 'text'; double quotes are for column names.)"
        raise _Rejected(
            "unknown_column",
            f'Unknown column "{column.name}". Available columns: {available}. '
            f'Numeric column names must be double-quoted, e.g. SELECT "2024".{hint}',
        )


# ---------------------------------------------------------------------------
# Rewrite
# ---------------------------------------------------------------------------
def _rewrite(
    statement: exp.Expression, schema: str, table: str
) -> tuple[exp.Expression, dict[str, str]]:
    """Qualify the allowed table and give CTEs unique internal names.

    Each reference keeps its original name as alias, so qualified column
    references such as ``t.component`` or ``r.n`` keep working.
    """
    names = _cte_names(statement)
    renamed = {name: f"{_CTE_PREFIX}{i}" for i, name in enumerate(sorted(names))}

    def transform(node: exp.Expression) -> exp.Expression:
        # Mutate in place (transform() works on a copy): returning a different
        # node would make sqlglot skip that node's children.
        if isinstance(node, exp.CTE) and node.alias.lower() in renamed:
            node.args["alias"].set("this", exp.to_identifier(renamed[node.alias.lower()], quoted=True))
        elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            is_cte = _is_cte_reference(node, names)
            if not node.alias:
                node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name, quoted=True)))
            if is_cte:
                node.set("this", exp.to_identifier(renamed[node.name.lower()], quoted=True))
            else:  # validated by _check_tables: this is the allowed table
                node.set("this", exp.to_identifier(table, quoted=True))
                node.set("db", exp.to_identifier(schema, quoted=True))
        return node

    # the tree was parsed for this call only: rewrite it in place (no deep copy)
    return statement.transform(transform, copy=False), {v: k for k, v in renamed.items()}


# ---------------------------------------------------------------------------
# Execution and rendering
# ---------------------------------------------------------------------------
def _execute(
    con: duckdb.DuckDBPyConnection, sql: str, limits: SandboxLimits, cte_names: dict[str, str]
) -> QueryResult:
    """Run validated SQL on this thread's cursor under the watchdog; map errors to kinds."""
    # A cursor per (connection, thread): the shared connection may serve several
    # threads, and interrupt() then only hits this thread's query.
    cursor = _CURSORS.get(con)
    ticket = _WATCHDOG.watch(cursor, limits.timeout_s)
    try:
        cursor.execute(sql)  # already bounded to max_rows + 1 rows
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except Exception as e:  # duckdb.Error subclasses and MemoryError alike
        fired = _WATCHDOG.release(ticket)
        _CURSORS.discard(con)  # start the next query on a clean cursor
        return _execution_failure(e, fired, limits, cte_names)
    # after release, interrupt() can no longer hit the cursor; if it fired just after the
    # query finished, the cursor may carry the interrupt into its next query: replace it
    if _WATCHDOG.release(ticket):
        _CURSORS.discard(con)
    return _render(names, rows, limits)


class _CursorPool:
    """One reusable cursor per (connection, thread): ``con.cursor()`` per query costs ~25 µs."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _cursors(self) -> weakref.WeakKeyDictionary:
        cursors = getattr(self._local, "cursors", None)
        if cursors is None:
            cursors = self._local.cursors = weakref.WeakKeyDictionary()
        return cursors

    def get(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        cursors = self._cursors()
        cursor = cursors.get(con)
        if cursor is None:
            cursor = cursors[con] = con.cursor()
        return cursor

    def discard(self, con: duckdb.DuckDBPyConnection) -> None:
        cursor = self._cursors().pop(con, None)
        if cursor is not None:
            try:
                cursor.close()
            except Exception:
                pass


_CURSORS = _CursorPool()


class _Watchdog:
    """One daemon thread that interrupts queries past their deadline.

    Cheaper than a ``threading.Timer`` (a new thread) per query. ``watch`` registers a cursor with
    a deadline; ``release`` unregisters it and says whether it was interrupted. Interrupts happen
    under the same lock, so once ``release`` returns the cursor can be closed safely.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._active: dict[int, Any] = {}
        self._fired: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def watch(self, cursor: Any, timeout_s: float) -> int:
        with self._cond:
            self._seq += 1
            ticket = self._seq
            self._active[ticket] = cursor
            deadline = time.monotonic() + timeout_s
            # The thread sleeps until the earliest deadline (or forever on an empty heap): wake
            # it only if this deadline comes first. Waking it per query costs ~20 µs.
            wake = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, ticket))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-watchdog", daemon=True)
                self._thread.start()
            elif wake:
                self._cond.notify()
            return ticket

    def release(self, ticket: int) -> bool:
        with self._cond:
            self._active.pop(ticket, None)
            fired = ticket in self._fired
            self._fired.discard(ticket)
            return fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._active:
                    heapq.heappop(self._heap)  # released before its deadline
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, ticket = self._heap[0]
                now = time.monotonic()
                if now < deadline:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                cursor = self._active.get(ticket)
                if cursor is not None:
                    self._fired.add(ticket)
                    try:
                        cursor.interrupt()
                    except Exception:
                        pass


_WATCHDOG = _Watchdog()


def _execution_failure(
    error: BaseException, timed_out: bool, limits: SandboxLimits, cte_names: dict[str, str]
) -> QueryResult:
    if timed_out or isinstance(error, duckdb.InterruptException):
        return _error(
            "timeout",
            f"Query timed out after {limits.timeout_s:g}s and was cancelled. "
            "Add filters or avoid large joins.",
            limits,
        )
    message = _clean_message(str(error))
    for internal, original in cte_names.items():
        message = message.replace(internal, original)
    if isinstance(error, (duckdb.OutOfMemoryException, MemoryError)):
        first_line = message.splitlines()[0] if message else "out of memory"
        return _error(
            "resource_limit",
            f"Query exceeded the memory limit ({limits.memory_limit}): {first_line}",
            limits,
        )
    return _error("execution_error", f"Query failed: {message}", limits)


def _clean_message(message: str) -> str:
    """Trim an error message: no ANSI codes, SQL echo or stack trace; bounded length."""
    message = _ANSI_ESCAPE.sub("", message)
    for marker in ("\n\nLINE ", "\nLINE ", "\n\nStack Trace", "\nStack Trace"):
        message = message.split(marker, 1)[0]
    message = message.strip()
    return message if len(message) <= 500 else message[:497] + "..."


def _error(kind: str, message: str, limits: SandboxLimits) -> QueryResult:
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


def _render(names: list[str], rows: list[tuple], limits: SandboxLimits) -> QueryResult:
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
