"""Resources shared by every asset: the DuckDB warehouse and where raw data and snapshots live.

DuckDB allows one writer process, and a read-only connection from another process conflicts with it
too. Correctness must not depend on the Dagster instance (a pool limit exists only where the instance's
dagster.yaml sets one), so every connection to the warehouse goes through `warehouse_lock`: a file lock
next to the warehouse (`<warehouse>.lock/`) that a writer holds exclusively and a reader holds shared
while its connection is open; the dbt step holds it exclusively around the dbt subprocess. A process
that waits longer than the timeout fails with an error naming the lock and who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from orchestration import paths

# Every asset that writes the warehouse also runs in this pool: where the instance gives the pool a limit
# of 1 (.dagster_home/dagster.yaml), Dagster does not even start a second writer step; where it does not,
# the warehouse lock below still serialises them.
WAREHOUSE_POOL = "duckdb_warehouse"
# How long a step waits for the warehouse before failing: long enough for a full `dbt build` elsewhere.
WAREHOUSE_LOCK_TIMEOUT_S = 1800.0
LOCK_POLL_S = 0.2


class WarehouseLockTimeout(TimeoutError):
    """The warehouse lock was not granted in time; the message names the lock and its holders."""


def lock_dir(warehouse: str | os.PathLike) -> Path:
    """`<warehouse>.lock/`: the lock file and one record per current holder."""
    return Path(f"{os.fspath(warehouse)}.lock")


# this thread's holds, by lock directory: a nested acquisition of the same lock reuses the outer one
# (flock would otherwise make a thread wait for itself); other threads and processes wait on flock
_HELD = threading.local()


def _held() -> dict[str, list]:  # lock directory -> [exclusive, depth]
    if not hasattr(_HELD, "locks"):
        _HELD.locks = {}
    return _HELD.locks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holders(warehouse: str | os.PathLike) -> list[dict]:
    """The recorded holders of the warehouse lock that are still running (stale records are removed)."""
    holders = []
    for record in sorted(lock_dir(warehouse).glob("holder-*.json")):
        try:
            holder = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", 0))):
            record.unlink(missing_ok=True)  # its process died without releasing: the OS released the lock
            continue
        holders.append(holder)
    return holders


def _describe(holders: list[dict]) -> str:
    if not holders:
        return "a process that has not recorded itself yet"
    return "; ".join(
        f"{h.get('mode')} by pid {h.get('pid')} on {h.get('host')} since {h.get('since')}"
        + (f" ({h['purpose']})" if h.get("purpose") else "")
        for h in holders
    )


@contextmanager
def warehouse_lock(
    warehouse: str | os.PathLike,
    *,
    exclusive: bool,
    purpose: str = "",
    timeout_s: float = WAREHOUSE_LOCK_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the warehouse lock: exclusive for a writer, shared for a reader; yields the lock directory.

    Waits up to `timeout_s` for other processes (logging once who it waits for), then raises
    WarehouseLockTimeout naming the lock file and its holders. Re-entrant within a thread.
    """
    directory = lock_dir(warehouse)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    held = _held().get(key)
    if held is not None:
        if exclusive and not held[0]:
            raise RuntimeError(
                f"this thread holds the warehouse lock {directory / 'lock'} shared and asks for it exclusively"
                f"{f' ({purpose})' if purpose else ''}: close the reader before opening a writer")
        held[1] += 1
        try:
            yield directory
        finally:
            held[1] -= 1
        return

    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    mode = "exclusive" if exclusive else "shared"
    deadline = time.monotonic() + timeout_s
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseLockTimeout(
                        f"gave up after {timeout_s:.0f}s waiting for the {mode} warehouse lock {directory / 'lock'}"
                        f"{f' ({purpose})' if purpose else ''}; held {_describe(lock_holders(warehouse))}"
                    ) from None
                if not waited and log is not None:
                    log(f"waiting for the {mode} warehouse lock {directory / 'lock'}, held "
                        f"{_describe(lock_holders(warehouse))}")
                waited = True
                time.sleep(LOCK_POLL_S)
    except BaseException:
        os.close(fd)
        raise
    record = directory / f"holder-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    try:
        record.write_text(json.dumps({
            "mode": mode, "pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }))
        _held()[key] = [exclusive, 1]
        yield directory
    finally:
        _held().pop(key, None)
        record.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def connect_warehouse(
    warehouse: str | os.PathLike,
    read_only: bool = False,
    *,
    purpose: str = "",
    timeout_s: float = WAREHOUSE_LOCK_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection to the warehouse, holding its lock (shared when read-only) while open."""
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    with warehouse_lock(warehouse, exclusive=not read_only, purpose=purpose, timeout_s=timeout_s, log=log):
        con = duckdb.connect(os.fspath(warehouse), read_only=read_only)
        try:
            yield con
        finally:
            con.close()


def step_purpose(context) -> str:
    """What holds the lock, for the message another waiting process shows: run id and step."""
    try:
        return f"run {context.run_id}, step {context.op_execution_context.step_key}"
    except Exception:  # a context without a step (direct invocation in a test)
        return f"run {getattr(context, 'run_id', '?')}"


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (raw.*, staging.*, intermediate.*, marts.*)."""

    path: str
    lock_timeout_s: float = WAREHOUSE_LOCK_TIMEOUT_S

    @contextmanager
    def connect(self, read_only: bool = False, purpose: str = "",
                log: Callable[[str], None] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect_warehouse(self.path, read_only, purpose=purpose, timeout_s=self.lock_timeout_s, log=log) as con:
            yield con

    @contextmanager
    def lock(self, exclusive: bool, purpose: str = "", log: Callable[[str], None] | None = None) -> Iterator[Path]:
        """The warehouse lock without a connection: for a subprocess that opens the warehouse (dbt) or
        code that opens it itself (the snapshot export)."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with warehouse_lock(self.path, exclusive=exclusive, purpose=purpose, timeout_s=self.lock_timeout_s,
                            log=log) as directory:
            yield directory


class DataPaths(dg.ConfigurableResource):
    """Folders the pipeline reads raw files from and writes environment snapshots to."""

    raw_root: str
    snapshots_root: str


def default_resources() -> dict[str, object]:
    return {
        "warehouse": Warehouse(path=str(paths.warehouse_path())),
        "data_paths": DataPaths(raw_root=str(paths.raw_root()), snapshots_root=str(paths.snapshots_root())),
    }
