"""Execution of validated SQL on a hardened, read-only DuckDB connection: opening the world database,
one reusable cursor per (connection, thread), one watchdog thread that interrupts queries past their
deadline, and DuckDB errors mapped to error kinds."""

from __future__ import annotations

import heapq
import os
import threading
import time
import weakref
from typing import Any

import duckdb

from rl_assets.sandbox.limits import SandboxLimits
from rl_assets.sandbox.results import QueryResult, clean_message, error_result, render

__all__ = ["execute", "open_world_db"]


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



def execute(
    con: duckdb.DuckDBPyConnection, sql: str, limits: SandboxLimits, cte_names: dict[str, str] | None = None
) -> QueryResult:
    """Run validated SQL (see rl_assets.sandbox.validation.validate) on this thread's cursor under the
    watchdog; map errors to kinds. ``cte_names`` (renamed -> written) translates error messages back."""
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
        return _execution_failure(e, fired, limits, cte_names or {})
    # after release, interrupt() can no longer hit the cursor; if it fired just after the
    # query finished, the cursor may carry the interrupt into its next query: replace it
    if _WATCHDOG.release(ticket):
        _CURSORS.discard(con)
    return render(names, rows, limits)


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
        return error_result(
            "timeout",
            f"Query timed out after {limits.timeout_s:g}s and was cancelled. "
            "Add filters or avoid large joins.",
            limits,
        )
    message = clean_message(str(error))
    for internal, original in cte_names.items():
        message = message.replace(internal, original)
    if isinstance(error, (duckdb.OutOfMemoryException, MemoryError)):
        first_line = message.splitlines()[0] if message else "out of memory"
        return error_result(
            "resource_limit",
            f"Query exceeded the memory limit ({limits.memory_limit}): {first_line}",
            limits,
        )
    return error_result("execution_error", f"Query failed: {message}", limits)

