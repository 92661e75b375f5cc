"""Load one raw source into DuckDB schema ``raw``: idempotent, replaces only that source's tables and
its rows in ``raw.rejected_records``, in one transaction, with bulk inserts from Arrow tables."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa

from rl_assets.raw.common import (
    ARROW_TYPES, REJECTED_COLUMNS, SOURCE_DIRS, TABLE_SCHEMAS, Collector, LoadResult,
)
from rl_assets.raw.finqa import load_finqa
from rl_assets.raw.reading import check_source, hash_contents, ignored_files, input_files, rel_path, source_files
from rl_assets.raw.sec10k import load_sec10k
from rl_assets.raw.tatqa import load_tatqa

LOADERS = {"sec10k": load_sec10k, "finqa": load_finqa, "tatqa": load_tatqa}


def load_source(con: duckdb.DuckDBPyConnection, source: str, raw_root: Path,
                progress: Callable[[str], None] | None = None) -> LoadResult:
    """(Re)load one source into schema ``raw``; idempotent, replaces only this source's data."""
    check_source(source)
    raw_root = Path(raw_root)
    inputs = input_files(source, raw_root)
    rels = [rel_path(p, raw_root) for p in inputs]
    # hash the bytes as of this load (reads each file once more; files are small)
    digest = hash_contents((r, p.read_bytes()) for r, p in zip(rels, inputs))
    if progress:
        progress(f"{source}: {len(inputs)} input file(s) under {raw_root / SOURCE_DIRS[source]}")

    col = Collector(source)
    LOADERS[source](source_files(source, raw_root), raw_root, col, progress)

    counts: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.rejected_records ({_ddl(REJECTED_COLUMNS)})")
        con.execute("DELETE FROM raw.rejected_records WHERE source = ?", [source])
        for table, columns in TABLE_SCHEMAS[source].items():
            con.execute(f"CREATE OR REPLACE TABLE raw.{table} ({_ddl(columns)})")
            _insert(con, f"raw.{table}", columns, col.rows[table])
            counts[table] = len(col.rows[table])
        _insert(con, "raw.rejected_records", REJECTED_COLUMNS, col.rejects)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise

    result = LoadResult(source=source, content_hash=digest, files=rels, counts=counts, rejected=len(col.rejects),
                        rejected_by_reason=col.rejected_by_reason(), records=col.records,
                        records_loaded=col.records_loaded, ignored_files=ignored_files(source, raw_root))
    if progress:
        progress(f"{source}: loaded {counts}; {result.records_loaded} of {result.records} records; "
                 f"rejected {result.rejected} {result.rejected_by_reason}")
    return result


def _arrow(columns: list[tuple[str, str]], rows: list[tuple]) -> pa.Table:
    schema = pa.schema([(name, ARROW_TYPES[typ]) for name, typ in columns])
    cols = list(zip(*rows)) if rows else [[] for _ in columns]
    return pa.Table.from_arrays([pa.array(list(c), type=ARROW_TYPES[t]) for c, (_, t) in zip(cols, columns)], schema=schema)


def _ddl(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{n}" {t}' for n, t in columns)


def _insert(con: duckdb.DuckDBPyConnection, target: str, columns: list[tuple[str, str]], rows: list[tuple]) -> None:
    if not rows:
        return
    view = "__raw_batch"
    con.register(view, _arrow(columns, rows))
    try:
        names = ", ".join(f'"{n}"' for n, _ in columns)
        con.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {view}")
    finally:
        con.unregister(view)
