"""`run_query`: an agent query from text to result — result cache, (memoised) validation, execution, and the
fall-back from the fast path to the full validation when DuckDB refuses a fast-path query."""

from __future__ import annotations

import functools
from typing import Any

import duckdb

from rl_assets.sandbox.cache import ResultCache
from rl_assets.sandbox.execution import execute
from rl_assets.sandbox.limits import SandboxLimits
from rl_assets.sandbox.results import QueryResult, clean_message, error_result
from rl_assets.sandbox.validation import QueryRejected, validate

__all__ = ["clear_validation_cache", "run_query"]


def run_query(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    query: str,
    limits: SandboxLimits = SandboxLimits(),
    columns: list[str] | tuple[str, ...] | None = None,
    cache: ResultCache | None = None,
    fast_path: bool = True,
) -> QueryResult:
    """Validate and execute an agent query against exactly one table ``schema.table``.

    ``columns`` (optional) are the table's column names; when given, references
    to other columns are rejected early with a helpful list (and the fast path is
    possible). ``cache`` (optional) memoises results of this (read-only) database.
    ``fast_path=False`` validates every query with sqlglot. Never raises.
    """
    columns = tuple(columns) if columns is not None else None
    key = (schema, table, query, limits, columns, fast_path)
    if cache is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    result = _run(con, schema, table, query, limits, columns, fast_path)
    if cache is not None:
        cache.put(key, result)
    return result


def _run(con, schema, table, query, limits, columns, fast_path) -> QueryResult:
    validated = _validate_cached(query, schema, table, limits, columns, fast_path)
    if validated[0] == "error":
        return error_result(validated[1], validated[2], limits)
    _, sql, cte_names, fast = validated
    try:
        result = execute(con, sql, limits, dict(cte_names))
    except Exception as e:  # defensive: execute already maps DuckDB errors
        result = error_result("execution_error", f"Query failed: {clean_message(str(e))}", limits)
    if fast and result.error_kind == "execution_error":
        # The fast path checks tokens, not grammar: a query it passed may still be malformed
        # (e.g. "WHERE x ="). Answer exactly as without the fast path (e.g. parse_error).
        return _run(con, schema, table, query, limits, columns, fast_path=False)
    return result


@functools.lru_cache(maxsize=20_000)
def _validate_cached(
    query: Any, schema: str, table: str, limits: SandboxLimits, columns: tuple[str, ...] | None,
    fast_path: bool = True,
) -> tuple:
    """("ok", sql, cte_names, fast) or ("error", kind, message); memoised (validation is pure)."""
    try:
        validated = validate(query, schema, table, limits, columns, fast_path)
    except QueryRejected as rejected:
        return ("error", rejected.kind, rejected.message)
    except RecursionError:
        return ("error", "parse_error", "Query is nested too deeply.")
    except Exception as e:  # defensive: a sqlglot bug must not escape
        return ("error", "parse_error", f"Could not analyse query: {clean_message(str(e))}")
    return ("ok", validated.sql, tuple(sorted(validated.cte_names.items())), validated.fast_path)


def clear_validation_cache() -> None:
    """Forget memoised validations (a benchmark measuring cold queries needs this)."""
    _validate_cached.cache_clear()
