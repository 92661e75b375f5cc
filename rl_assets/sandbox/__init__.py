"""Hardened, read-only SQL execution layer for the RL tool environment.

An LLM agent answers questions about one financial table at a time by writing
SQL.  This package validates each agent query, rewrites it so that it can only
touch the one table it is about, and runs it on a locked-down DuckDB connection
with row, character, time and memory limits.  It never raises: every problem
becomes a :class:`QueryResult` with ``ok=False``, an ``error_kind`` and a
message meant for the agent.

Defence in depth, outermost first:

1. :func:`open_world_db` opens the world database read-only with external access,
   extension loading and disk spilling disabled, then locks the configuration
   so that no later statement can loosen it.
2. :func:`run_query` validates the query (:func:`validate`) and rejects anything
   that is not exactly one SELECT over the allowed table using allowlisted functions.
3. The raw query text is not executed: the *validated AST* is regenerated as
   DuckDB SQL (without comments) with the table fully qualified, bounded by a
   ``LIMIT`` and run under a wall-clock timer that interrupts it.

Fast path: the simple queries agents write most (one table, plain keywords,
a few allowlisted functions, known columns, no comments) are recognised from
DuckDB's own token stream by :mod:`rl_assets.sandbox.simple_select`, which is safe by
construction and returns the query text with the table qualified and a LIMIT;
it never rejects, so everything else (and every error message) still goes
through the sqlglot validation. Same limits, timer and execution for both.

One concern per module:

=================  ==============================================================
``limits``         SandboxLimits: rows, characters, time, memory, query length
``allowlist``      allowed functions, the string-growth bound, forbidden statements
``simple_select``  the fast path (token-level recogniser)
``validation``     validate(): the checks, with their error messages
``rewrite``        table qualification, CTE renaming, the bounding LIMIT
``execution``      open_world_db(), cursors per thread, the watchdog, execute()
``results``        QueryResult, ERROR_KINDS, error messages, render() to JSON
``cache``          ResultCache of a read-only database
``query``          run_query(): cache -> validation (memoised) -> execution
=================  ==============================================================

Plain Python on purpose: nothing here imports dagster.
"""

from rl_assets.sandbox.cache import ResultCache
from rl_assets.sandbox.execution import execute, open_world_db
from rl_assets.sandbox.limits import SandboxLimits
from rl_assets.sandbox.query import clear_validation_cache, run_query
from rl_assets.sandbox.results import ERROR_KINDS, QueryResult, render, result_rows
from rl_assets.sandbox.validation import QueryRejected, Validated, quote_column, quote_literal, quoting_example, validate

__all__ = [
    "ERROR_KINDS",
    "QueryRejected",
    "QueryResult",
    "ResultCache",
    "SandboxLimits",
    "Validated",
    "clear_validation_cache",
    "execute",
    "open_world_db",
    "quote_column",
    "quote_literal",
    "quoting_example",
    "render",
    "result_rows",
    "run_query",
    "validate",
]
