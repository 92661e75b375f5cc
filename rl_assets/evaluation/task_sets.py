"""Evaluation task sets: `<single_table|multi_table>-<synth|real>-<val|test>`.

`synth` = tasks synthesised from the SEC 10-K tables (source sec10k), `real` = FinQA and TAT-QA questions.
A task set is read from a snapshot with `rl_assets.snapshot.read_tasks` (so tasks the snapshot's oracle
could not solve are left out) and may be empty (there are no multi-table real questions today).

`task_set_version(snapshot, tasks)` is a hash of the set's tasks and of every world (company) they are
asked about: two snapshots that agree on it would give the same episodes, so an evaluation whose task set
version did not change need not run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from rl_assets.snapshot import MANIFEST, publication_problem, read_tasks

QUESTION_TYPES = ("single_table", "multi_table")
ORIGINS: dict[str, tuple[str, ...]] = {"synth": ("sec10k",), "real": ("finqa", "tatqa")}
SPLITS = ("val", "test")
TASK_SETS = tuple(f"{q}-{o}-{s}" for s in SPLITS for q in QUESTION_TYPES for o in ORIGINS)
TEST_TASK_SETS = tuple(t for t in TASK_SETS if t.endswith("-test"))
TASK_SET_FORMAT = "<single_table|multi_table>-<synth|real>-<val|test>"


class TaskSetError(ValueError):
    """An unknown task set name or a directory that is not a snapshot."""


@dataclass(frozen=True)
class TaskSet:
    name: str
    question_type: str
    origin: str
    split: str

    @property
    def sources(self) -> tuple[str, ...]:
        return ORIGINS[self.origin]


def parse_task_set(name: str) -> TaskSet:
    parts = (name or "").split("-")
    if len(parts) != 3 or parts[0] not in QUESTION_TYPES or parts[1] not in ORIGINS or parts[2] not in SPLITS:
        raise TaskSetError(f"unknown task set {name!r}: expected {TASK_SET_FORMAT}, one of {', '.join(TASK_SETS)}")
    return TaskSet(name, *parts)


def check_snapshot(snapshot: str | os.PathLike) -> Path:
    """The snapshot directory, or a clear error if `snapshot` is not one."""
    path = Path(snapshot).expanduser()
    if not path.is_dir():
        raise TaskSetError(f"no snapshot at {path}: the directory does not exist")
    if not (path / MANIFEST).is_file() or not (path / "tasks.parquet").is_file():
        raise TaskSetError(f"{path} is not an environment snapshot (no {MANIFEST} / tasks.parquet): "
                           "give a directory under data/snapshots/")
    problem = publication_problem(path)
    if problem is not None:
        raise TaskSetError(f"{problem}; evaluation uses published snapshots only (materialise environment_snapshot)")
    return path.resolve()


def load_task_set(snapshot: str | os.PathLike, name: str) -> list[dict[str, Any]]:
    """The tasks of a task set, ordered by task_id (possibly none)."""
    task_set = parse_task_set(name)
    return read_tasks(check_snapshot(snapshot), splits=[task_set.split], question_types=[task_set.question_type],
                      sources=task_set.sources)


def task_set_version(snapshot: str | os.PathLike, tasks: list[dict[str, Any]]) -> str:
    """16 hex digits over the tasks' rows and the content of the worlds they are asked about."""
    snapshot = check_snapshot(snapshot)
    digest = hashlib.sha256(b"finqa-rl-task-set-v1\n")
    for task in sorted(tasks, key=lambda t: t["task_id"]):
        digest.update(json.dumps(task, sort_keys=True, default=str).encode() + b"\n")
    worlds = sorted({t["world_id"] for t in tasks})
    if worlds:
        with duckdb.connect() as con:
            for table, order in (("world_tables", "world_id, table_name"),
                                 ("world_cells", "world_id, table_name, row_index, column_index")):
                (hashed,) = con.execute(
                    f"SELECT md5(string_agg(CAST(r AS VARCHAR), chr(10) ORDER BY {order})) "
                    f"FROM read_parquet('{snapshot / (table + '.parquet')}') r WHERE world_id IN (SELECT unnest(?))",
                    [worlds],
                ).fetchone()
                digest.update(f"{table}:{hashed}\n".encode())
    return digest.hexdigest()[:16]


def sample_tasks(tasks: list[dict[str, Any]], size: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded sample of `size` tasks (all of them when size is None / 0 or at least the set's size)."""
    if not size or size >= len(tasks):
        return list(tasks)
    picked = random.Random(seed).sample(range(len(tasks)), size)
    return [tasks[i] for i in sorted(picked)]
