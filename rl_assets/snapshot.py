"""Immutable environment snapshots: the curated marts exported as Parquet, named by content hash.

A snapshot directory `<snapshots_root>/<hash>/` holds:

- `world_tables.parquet`, `world_cells.parquet`, `tasks.parquet`: the marts, rows in a fixed order;
- `world.duckdb`: derived from world_cells, one schema per world and one real relational table per
  world table (all columns VARCHAR cell text), which the environment opens read-only;
- `manifest.json`: hash, creation time, row counts, task counts, file checksums, and the data
  versions of the sources it was built from.

The hash is the SHA-256 over the three Parquet files' names and checksums (the derived DuckDB file,
creation time and source versions are not part of it), so exporting unchanged marts gives the same
hash and the same directory. A directory, once written, is never modified: training and evaluation
read snapshots only, never the live warehouse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import duckdb

FORMAT_VERSION = 1
# mart -> ORDER BY that fixes the row order (and so the Parquet bytes)
SNAPSHOT_TABLES: dict[str, str] = {
    "world_tables": "world_id, table_name",
    "world_cells": "world_id, table_name, row_index, column_index",
    "tasks": "task_id",
}
WORLD_DB = "world.duckdb"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    hash: str
    manifest: dict[str, Any]
    created: bool  # False when an identical snapshot already existed


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_snapshot(
    warehouse_path: str | os.PathLike,
    snapshots_root: str | os.PathLike,
    source_data_versions: dict[str, str] | None = None,
    schema: str = "marts",
) -> Snapshot:
    """Export the marts of `warehouse_path` (read-only) into a content-addressed snapshot directory."""
    root = Path(snapshots_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        files: dict[str, dict[str, Any]] = {}
        with duckdb.connect(str(warehouse_path), read_only=True) as con:
            for table, order_by in SNAPSHOT_TABLES.items():
                out = tmp / f"{table}.parquet"
                con.execute(
                    f"COPY (SELECT * FROM {schema}.{table} ORDER BY {order_by}) TO '{out}' "
                    "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
                )
                rows = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
                files[table] = {"file": out.name, "rows": rows, "sha256": _sha256(out)}
            task_counts = con.execute(
                f"SELECT source, question_type, split, count(*) FROM {schema}.tasks GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        digest = hashlib.sha256(f"finqa-rl-snapshot-v{FORMAT_VERSION}\n".encode())
        for table in SNAPSHOT_TABLES:
            digest.update(f"{table}:{files[table]['sha256']}\n".encode())
        snapshot_hash = digest.hexdigest()[:16]
        final = root / snapshot_hash
        if final.exists():
            return Snapshot(final, snapshot_hash, read_manifest(final), created=False)

        build_world_db(tmp / "world_cells.parquet", tmp / "world_tables.parquet", tmp / WORLD_DB)
        manifest = {
            "snapshot_hash": snapshot_hash,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tables": files,
            "world_db": WORLD_DB,
            "task_counts": [
                {"source": s, "question_type": q, "split": sp, "tasks": n} for s, q, sp, n in task_counts
            ],
            "source_data_versions": dict(sorted((source_data_versions or {}).items())),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            tmp.rename(final)
        except OSError:  # another process created the same snapshot first
            if not final.exists():
                raise
        return Snapshot(final, snapshot_hash, read_manifest(final), created=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_world_db(world_cells_parquet: Path, world_tables_parquet: Path, out: Path) -> None:
    """One DuckDB schema per world, one VARCHAR table per world table, rows in their original order."""
    # ~1,500 small tables: the smallest block size keeps the file small (the default 256 KiB block
    # per table would make it hundreds of MB).
    con = duckdb.connect()
    con.execute(f"ATTACH '{out}' AS world (BLOCK_SIZE 16384)")
    con.execute("USE world")
    try:
        con.execute(f"CREATE TEMP TABLE cells AS SELECT * FROM read_parquet('{world_cells_parquet}')")
        tables = con.execute(
            f"SELECT world_id, table_name, columns_json FROM read_parquet('{world_tables_parquet}') ORDER BY 1, 2"
        ).fetchall()
        for world_id in sorted({t[0] for t in tables}):
            con.execute(f'CREATE SCHEMA "{world_id}"')
        for world_id, table_name, columns_json in tables:
            columns = json.loads(columns_json)
            select = ", ".join(
                f"max(cell_text) FILTER (WHERE column_name = '{c}') AS \"{c}\"" for c in columns
            )
            con.execute(
                f'CREATE TABLE "{world_id}"."{table_name}" AS '
                f"SELECT {select} FROM cells WHERE world_id = ? AND table_name = ? "
                "GROUP BY row_index ORDER BY row_index",
                [world_id, table_name],
            )
        con.execute("DROP TABLE cells")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def read_manifest(snapshot_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(snapshot_dir) / MANIFEST).read_text())


def latest_snapshot(snapshots_root: str | os.PathLike) -> Path:
    """The most recently created snapshot under `snapshots_root` (by manifest creation time)."""
    root = Path(snapshots_root)
    candidates = [p for p in root.iterdir() if (p / MANIFEST).exists()] if root.exists() else []
    if not candidates:
        raise FileNotFoundError(f"no snapshot under {root}: materialise the environment_snapshot asset first")
    return max(candidates, key=lambda p: (read_manifest(p)["created_at"], p.name))


def read_tasks(
    snapshot: str | os.PathLike,
    splits: Iterable[str] | None = None,
    question_types: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The tasks training and evaluation may use, as dicts ordered by task_id.

    Tasks the snapshot's oracle check could not solve (manifest `oracle.unsolved`, each with its reason)
    are left out. `splits` / `question_types` / `sources` filter when given.
    """
    snapshot = Path(snapshot)
    unsolved = {u["task_id"] for u in read_manifest(snapshot).get("oracle", {}).get("unsolved", [])}
    filters, params = [], []
    for column, values in (("split", splits), ("question_type", question_types), ("source", sources)):
        if values is not None:
            values = list(values)
            filters.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "false")
            params.extend(values)
    where = f"WHERE {' AND '.join(filters)}" if filters else ""
    with duckdb.connect() as con:
        cursor = con.execute(
            f"SELECT * FROM read_parquet('{snapshot / 'tasks.parquet'}') {where} ORDER BY task_id", params
        )
        names = [d[0] for d in cursor.description]
        return [row for row in (dict(zip(names, r)) for r in cursor.fetchall()) if row["task_id"] not in unsolved]
