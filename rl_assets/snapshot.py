"""Immutable environment snapshots: the curated marts exported as Parquet, named by content hash,
published only after their oracle check passed.

A published snapshot `<snapshots_root>/<hash>/` holds:

- `world_tables.parquet`, `world_cells.parquet`, `tasks.parquet`: the marts, rows in a fixed order;
- `world.duckdb`: derived from world_cells, one schema per world and one real relational table per
  world table (all columns VARCHAR cell text), which the environment opens read-only;
- `manifest.json`: hash, creation and publication time, row counts, task counts, file checksums, the
  lineage (data versions of its inputs and sources, code version) and the result of its oracle check
  (`oracle`: pass rates per task set, solved / unsolved counts, `unsolved` = [{task_id, reason, detail}]).

The hash is the SHA-256 over the format version and the three Parquet files' names and checksums (the
derived DuckDB file, times, lineage and check result are not part of it), so exporting unchanged marts
gives the same hash and the same directory.

Publication: `stage_snapshot` writes everything into `<snapshots_root>/.staging/<hash>-<token>/`, which
nothing but the oracle check reads (`rl_assets.oracle.check_and_publish`); `publish_snapshot` writes the
check result into the manifest and renames the directory to `<snapshots_root>/<hash>` in one atomic step.
A snapshot that fails its check is deleted from staging and never published. A published directory is
never modified. `read_tasks`, `rl_assets.env.FinQAEnv` and `latest_snapshot` (so `default_snapshot()`)
refuse or skip anything that is not published.
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

from rl_assets.versioning import REPO_ROOT, sha256_file

FORMAT_VERSION = 2  # 2: published only after the oracle check, with the check result in the manifest
# mart -> ORDER BY that fixes the row order (and so the Parquet bytes)
SNAPSHOT_TABLES: dict[str, str] = {
    "world_tables": "world_id, table_name",
    "world_cells": "world_id, table_name, row_index, column_index",
    "tasks": "task_id",
}
WORLD_DB = "world.duckdb"
MANIFEST = "manifest.json"
STAGING = ".staging"
SNAPSHOTS_DIR_VAR = "FINQA_RL_SNAPSHOTS_DIR"


class UnpublishedSnapshotError(ValueError):
    """A snapshot directory that has not passed its oracle check (or is no snapshot at all)."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    hash: str
    manifest: dict[str, Any]
    created: bool  # False when an identical snapshot already existed (published)
    published: bool  # False while it waits in staging for its oracle check


def snapshots_root() -> Path:
    """$FINQA_RL_SNAPSHOTS_DIR (a relative value is taken from the current directory), else
    <repository>/data/snapshots: never dependent on the current directory by default."""
    value = os.environ.get(SNAPSHOTS_DIR_VAR)
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "snapshots"


def stage_snapshot(
    warehouse_path: str | os.PathLike,
    snapshots_root: str | os.PathLike,
    lineage: dict[str, Any] | None = None,
    schema: str = "marts",
) -> Snapshot:
    """Export the marts of `warehouse_path` (read-only) into a staging directory, ready for its check.

    Returns the already published snapshot instead (`published=True, created=False`) when one with the
    same content exists. `lineage` (e.g. source_data_versions, upstream_data_versions, code_version)
    goes into the manifest as is.
    """
    root = Path(snapshots_root)
    (root / STAGING).mkdir(parents=True, exist_ok=True)
    tmp = root / STAGING / f"tmp-{uuid.uuid4().hex}"
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
                files[table] = {"file": out.name, "rows": rows, "sha256": sha256_file(out)}
            task_counts = con.execute(
                f"SELECT source, question_type, split, count(*) FROM {schema}.tasks GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        digest = hashlib.sha256(f"finqa-rl-snapshot-v{FORMAT_VERSION}\n".encode())
        for table in SNAPSHOT_TABLES:
            digest.update(f"{table}:{files[table]['sha256']}\n".encode())
        snapshot_hash = digest.hexdigest()[:16]
        final = root / snapshot_hash
        if final.exists():
            require_published(final)  # a directory named like a snapshot that is not one: stop, say why
            return Snapshot(final, snapshot_hash, read_manifest(final), created=False, published=True)

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
            **{key: lineage[key] for key in sorted(lineage or {})},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        staged = root / STAGING / f"{snapshot_hash}-{uuid.uuid4().hex[:8]}"
        tmp.rename(staged)
        return Snapshot(staged, snapshot_hash, manifest, created=True, published=False)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_snapshot(staged: Snapshot, oracle: dict[str, Any]) -> Snapshot:
    """Record the passed oracle check in the staged manifest and move the directory to `<root>/<hash>`.

    Atomic (one rename) and idempotent: when another process published the same snapshot first, the
    staged copy is dropped and that one is returned. Raises ValueError for a check that did not pass
    (use `discard_staged`).
    """
    if staged.published:
        raise ValueError(f"{staged.path} is already published")
    if oracle.get("passed") is not True:
        raise ValueError(f"snapshot {staged.hash} did not pass its oracle check; it cannot be published")
    final = staged.path.parent.parent / staged.hash
    manifest = {**staged.manifest, "oracle": oracle,
                "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (staged.path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    try:
        staged.path.rename(final)
    except OSError:  # another process published the same snapshot first
        if not final.exists():
            raise
        shutil.rmtree(staged.path, ignore_errors=True)
        return Snapshot(final, staged.hash, read_manifest(final), created=False, published=True)
    return Snapshot(final, staged.hash, manifest, created=True, published=True)


def discard_staged(staged: Snapshot) -> None:
    """Delete a staged snapshot (one that failed its check). A published snapshot is never deleted."""
    if staged.published or staged.path.parent.name != STAGING:
        raise ValueError(f"{staged.path} is not a staged snapshot")
    shutil.rmtree(staged.path, ignore_errors=True)


def publication_problem(snapshot_dir: str | os.PathLike) -> str | None:
    """Why `snapshot_dir` is not a published snapshot, or None when it is one."""
    path = Path(snapshot_dir)
    if not (path / MANIFEST).is_file():
        return f"{path} has no {MANIFEST}: not a snapshot directory"
    if path.parent.name == STAGING:
        return f"{path} is staged and waits for its oracle check"
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError) as e:
        return f"{path / MANIFEST} cannot be read: {e}"
    oracle = manifest.get("oracle")
    if not isinstance(oracle, dict) or oracle.get("passed") is not True or not manifest.get("published_at"):
        return f"{path} was never published: its manifest records no passed oracle check"
    if manifest.get("snapshot_hash") != path.name:
        return f"{path} is not named by its content hash {manifest.get('snapshot_hash')!r}"
    return None


def is_published(snapshot_dir: str | os.PathLike) -> bool:
    return publication_problem(snapshot_dir) is None


def require_published(snapshot_dir: str | os.PathLike) -> Path:
    """`snapshot_dir` as a Path; raises UnpublishedSnapshotError (saying why) unless it is published."""
    problem = publication_problem(snapshot_dir)
    if problem is not None:
        raise UnpublishedSnapshotError(
            f"{problem}. Training and evaluation use published snapshots only: materialise the "
            "environment_snapshot asset (its oracle check publishes it) or pick one under the snapshots root."
        )
    return Path(snapshot_dir)


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
    """The most recently published snapshot under `snapshots_root` (by publication time, then name).

    Staged and unpublished directories are skipped."""
    root = Path(snapshots_root)
    candidates = [p for p in root.iterdir() if p.is_dir() and is_published(p)] if root.exists() else []
    if not candidates:
        raise FileNotFoundError(
            f"no published snapshot under {root}: materialise the environment_snapshot asset first "
            "(a snapshot is published once its oracle check passes)"
        )
    return max(candidates, key=lambda p: (read_manifest(p)["published_at"], p.name))


def read_tasks(
    snapshot: str | os.PathLike,
    splits: Iterable[str] | None = None,
    question_types: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The tasks training and evaluation may use, as dicts ordered by task_id.

    Tasks the snapshot's oracle check could not solve (manifest `oracle.unsolved`, each with its reason)
    are left out. `splits` / `question_types` / `sources` filter when given. Raises
    UnpublishedSnapshotError for a snapshot that is not published.
    """
    snapshot = require_published(snapshot)
    unsolved = {u["task_id"] for u in read_manifest(snapshot)["oracle"].get("unsolved", [])}
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
