"""The evaluation store: a DuckDB file (`data/evaluations.duckdb`, override `FINQA_RL_EVALUATIONS`) that
only ever grows.

Tables
    evaluations  one row per evaluation run: evaluation_id, version (1, 2, ... per policy and task set),
                 created_at, policy, policy_spec, policy_version, task_set, task_set_version,
                 snapshot_hash, snapshot_path, code_version, git_commit, config_hash, config (JSON),
                 lineage (JSON: the policy artifact's lineage.json), compute (JSON), n_tasks, n_episodes
    episodes     one row per episode, with every lineage column of its evaluation repeated (so a single
                 query over `episodes` traces any score), the task (task_id, split, question_type,
                 analytic_type, source, world_id, gold), the outcome (answer, correct, reward, stop_reason,
                 error), every rubric field as a column (`n_tool_calls` is the rubric's `tool_calls`),
                 tool calls / messages / extra as JSON, tokens, times, cost and the training compute
    summaries    one row per (evaluation, group, metric): value, bootstrap interval, delta vs a baseline

Nothing is updated or deleted: a re-run appends a new version. DuckDB allows one writing process; a
connection that finds the file locked by another process waits and retries (`lock_timeout_s`).
"""

from __future__ import annotations

import json
import os
import time
import typing
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator

import duckdb

from rl_assets.telemetry import Rubric
from rl_assets.versioning import REPO_ROOT

LOCK_RETRY_S = (0.05, 2.0)  # first and longest wait between attempts

EVALUATION_COLUMNS: dict[str, str] = {
    "evaluation_id": "VARCHAR", "version": "INTEGER", "created_at": "TIMESTAMPTZ",
    "policy": "VARCHAR", "policy_spec": "VARCHAR", "policy_version": "VARCHAR",
    "task_set": "VARCHAR", "task_set_version": "VARCHAR", "snapshot_hash": "VARCHAR", "snapshot_path": "VARCHAR",
    "code_version": "VARCHAR", "git_commit": "VARCHAR", "config_hash": "VARCHAR", "config": "JSON",
    "base_model": "VARCHAR", "base_model_hash": "VARCHAR",
}

# rubric fields that are columns of their own (the rubric's own names; `tool_calls` is a count there)
RUBRIC_RENAMES = {"tool_calls": "n_tool_calls"}
RUBRIC_SKIPPED = {"correct", "submitted_answer"}  # the episode's `correct` and `answer`


def _rubric_columns() -> dict[str, str]:
    hints = typing.get_type_hints(Rubric)
    out = {}
    for f in fields(Rubric):
        if f.name in RUBRIC_SKIPPED:
            continue
        hint = str(hints[f.name])
        kind = "BOOLEAN" if "bool" in hint else "BIGINT" if "int" in hint and "dict" not in hint else \
            "JSON" if "dict" in hint or "list" in hint else "DOUBLE" if "float" in hint else "VARCHAR"
        out[RUBRIC_RENAMES.get(f.name, f.name)] = kind
    return out


EPISODE_COLUMNS: dict[str, str] = {
    **EVALUATION_COLUMNS,
    "sample": "INTEGER", "task_id": "VARCHAR", "split": "VARCHAR", "question_type": "VARCHAR",
    "analytic_type": "VARCHAR", "source": "VARCHAR", "world_id": "VARCHAR", "gold_value": "DOUBLE",
    "gold_unit": "VARCHAR",
    "answer": "VARCHAR", "correct": "BOOLEAN", "reward": "DOUBLE", "stop_reason": "VARCHAR", "error": "VARCHAR",
    **_rubric_columns(),
    "tool_calls": "JSON", "turns": "INTEGER", "well_formed_turns": "INTEGER", "tokens_in": "BIGINT",
    "tokens_out": "BIGINT", "tokens_encoded": "BIGINT", "model_seconds": "DOUBLE", "env_seconds": "DOUBLE", "latency_s": "DOUBLE",
    "cost_usd": "DOUBLE", "training_compute": "JSON", "training_cost_usd": "DOUBLE",
    "training_gpu_minutes": "DOUBLE", "messages": "JSON", "extra": "JSON",
}
RUN_COLUMNS: dict[str, str] = {
    **EVALUATION_COLUMNS, "lineage": "JSON", "compute": "JSON", "n_tasks": "INTEGER", "n_episodes": "INTEGER",
}
SUMMARY_COLUMNS: dict[str, str] = {
    **EVALUATION_COLUMNS, "summary_id": "VARCHAR", "summarised_at": "TIMESTAMPTZ",
    "baseline_policy": "VARCHAR", "baseline_evaluation_id": "VARCHAR",
    "group_kind": "VARCHAR", "group_value": "VARCHAR", "metric": "VARCHAR", "value": "DOUBLE",
    "ci_low": "DOUBLE", "ci_high": "DOUBLE", "n_tasks": "INTEGER", "n_episodes": "INTEGER",
    "delta": "DOUBLE", "delta_ci_low": "DOUBLE", "delta_ci_high": "DOUBLE",
}
# experiment comparisons (rl_assets.experiments.comparison): one row per arm x task set x metric, with the lineage
# of the cell: the evaluation it read and the arm's training config, base model, snapshot and code versions
COMPARISON_COLUMNS: dict[str, str] = {
    "comparison_id": "VARCHAR", "created_at": "TIMESTAMPTZ", "experiment": "VARCHAR", "experiment_hash": "VARCHAR",
    "arm": "VARCHAR", "role": "VARCHAR", "policy": "VARCHAR", "task_set": "VARCHAR", "status": "VARCHAR",
    "detail": "VARCHAR", "metric": "VARCHAR", "value": "DOUBLE", "ci_low": "DOUBLE", "ci_high": "DOUBLE",
    "delta": "DOUBLE", "delta_ci_low": "DOUBLE", "delta_ci_high": "DOUBLE", "n_tasks": "INTEGER",
    "evaluation_id": "VARCHAR", "policy_version": "VARCHAR", "snapshot_hash": "VARCHAR", "code_version": "VARCHAR",
    "training_config_hash": "VARCHAR", "training_code_version": "VARCHAR", "base_model": "VARCHAR",
    "base_model_hash": "VARCHAR",
}
TABLES = {"evaluations": RUN_COLUMNS, "episodes": EPISODE_COLUMNS, "summaries": SUMMARY_COLUMNS,
          "comparisons": COMPARISON_COLUMNS}
JSON_COLUMNS = {name for cols in TABLES.values() for name, kind in cols.items() if kind == "JSON"}


def default_store_path() -> Path:
    value = os.environ.get("FINQA_RL_EVALUATIONS")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / "data" / "evaluations.duckdb"


class EvaluationStore:
    def __init__(self, path: str | os.PathLike | None = None, lock_timeout_s: float = 300.0):
        self.path = Path(path) if path is not None else default_store_path()
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the tables in place, waiting while another process holds the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        wait = LOCK_RETRY_S[0]
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(wait)  # another process is writing: retry
                wait = min(wait * 2, LOCK_RETRY_S[1])
        try:
            existing: dict[str, set[str]] = {}
            for table, column in con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall():
                existing.setdefault(table, set()).add(column)
            for table, columns in TABLES.items():
                if table not in existing:
                    con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns.items())})")
                    continue
                for column in columns.keys() - existing[table]:  # columns added since the file was created
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
            yield con
        finally:
            con.close()

    # ------------------------------------------------------------------ writing
    def append_evaluation(self, run: dict[str, Any], episodes: list[dict[str, Any]]) -> int:
        """Append one evaluation and its episodes in one transaction; returns its version."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                (version,) = con.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM evaluations WHERE policy = ? AND task_set = ?",
                    [run["policy"], run["task_set"]],
                ).fetchone()
                run = {**run, "version": version}
                _insert(con, "evaluations", [run])
                _insert(con, "episodes", [{**e, **{k: run[k] for k in EVALUATION_COLUMNS}} for e in episodes])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return version

    def append_summaries(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            _insert(con, "summaries", rows)

    def append_comparison(self, rows: list[dict[str, Any]]) -> None:
        with self.connect() as con:
            _insert(con, "comparisons", rows)

    # ------------------------------------------------------------------ reading
    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of any query over the store as dicts (JSON columns decoded)."""
        with self.connect() as con:
            cursor = con.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [{n: _decode(n, v) for n, v in zip(names, row)} for row in cursor.fetchall()]

    def evaluation(self, evaluation_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM evaluations WHERE evaluation_id = ?", [evaluation_id])
        return rows[0] if rows else None

    def episodes(self, evaluation_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM episodes WHERE evaluation_id = ? ORDER BY sample, task_id", [evaluation_id])

    def latest_evaluation(self, policy: str, task_set: str, *, task_set_version: str | None = None,
                          snapshot_hash: str | None = None, config_hash: str | None = None,
                          policy_version: str | None = None) -> dict[str, Any] | None:
        """The newest evaluation of a policy on a task set (optionally: of these tasks / this snapshot / with this
        evaluation config / of this artifact version)."""
        sql = "SELECT * FROM evaluations WHERE policy = ? AND task_set = ?"
        params: list[Any] = [policy, task_set]
        for column, value in (("task_set_version", task_set_version), ("snapshot_hash", snapshot_hash),
                              ("config_hash", config_hash), ("policy_version", policy_version)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        rows = self.query(sql + " ORDER BY version DESC LIMIT 1", params)
        return rows[0] if rows else None

    def summaries(self, evaluation_id: str) -> list[dict[str, Any]]:
        """The newest summary of an evaluation."""
        return self.query(
            "SELECT * FROM summaries WHERE evaluation_id = ? AND summary_id = (SELECT summary_id FROM summaries "
            "WHERE evaluation_id = ? ORDER BY summarised_at DESC LIMIT 1) ORDER BY group_kind, group_value, metric",
            [evaluation_id, evaluation_id],
        )


def _decode(name: str, value: Any) -> Any:
    if name in JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(TABLES[table])
    unknown = set().union(*rows) - set(columns)
    if unknown:
        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
    values = [[json.dumps(r.get(c), default=str) if c in JSON_COLUMNS and r.get(c) is not None else r.get(c)
               for c in columns] for r in rows]
    con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", values)
