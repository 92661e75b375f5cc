"""The workload of benchmarks/env_throughput.py: what each tool is called with (gold operands of the real
snapshot), and the two baselines that answer the same `sql_query` by re-reading the raw table JSON per call."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from rl_assets.oracle import load_tasks, operand_query  # noqa: E402

GROUP_SIZE = 8  # rollouts per prompt in the GRPO-like sql_query workload

# ----------------------------------------------------------------------------- workload
@dataclass(frozen=True)
class SqlItem:
    world_id: str
    table: str
    row_label_column: str
    row_label: str
    column: str
    gold_cell_text: str | None
    query: str


@dataclass
class Workload:
    tasks: list[dict[str, Any]]  # rows of tasks.parquet (all sources), for reset()
    descriptions: list[str]  # company names
    table_infos: list[tuple[str, str]]  # (company, table)
    sql: list[SqlItem]  # distinct queries, each once (cold: nothing can be memoised)
    expressions: list[str]
    answers: list[str]
    sql_population: int = 0  # sec10k gold operands considered
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> operands skipped
    column_mismatch_tables: list[dict[str, Any]] = field(default_factory=list)
    sql_grpo: list[SqlItem] = field(default_factory=list)  # GRPO-like: each query issued by a group of rollouts


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def normalize_identifier(name: str) -> str:
    """Approximation of the dbt macro: lower case, runs of non-alphanumerics -> '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _operands(task: dict[str, Any]) -> list[dict[str, Any]]:
    raw = task.get("gold_operands")
    if not raw:
        return []
    try:
        ops = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return [o for o in ops if isinstance(o, dict)] if isinstance(ops, list) else []


def _expression(task: dict[str, Any], rng: random.Random) -> str:
    """The task's template expression with its operand values substituted (a0, a1, ...), else a synthetic one."""
    expr = task.get("gold_expression") or ""
    ops = _operands(task)
    values = [o.get("value") for o in ops]
    if task.get("gold_program_kind") == "template" and values and all(isinstance(v, (int, float)) for v in values):
        out = re.sub(r"\ba(\d+)\b", lambda m: repr(float(values[int(m.group(1))])) if int(m.group(1)) < len(values) else m.group(0), expr)
        if not re.search(r"\ba\d+\b", out):
            return out
    a, b = rng.uniform(1, 1e5), rng.uniform(1, 1e5)
    return f"({a:.2f} - {b:.2f}) / {b:.2f} * 100"


def build_workload(snapshot: Path, raw_dir: Path, world_columns: dict[tuple[str, str], tuple[str, ...]],
                   n: int, seed: int) -> Workload:
    tasks = load_tasks(snapshot)
    if not tasks:
        raise SystemExit(f"no tasks in {snapshot / 'tasks.parquet'}")
    rng = random.Random(seed)

    # --- sql_query workload: gold operands of sec10k tasks whose raw JSON table exists and matches
    json_columns: dict[tuple[str, str], list[str] | None] = {}
    skipped: dict[str, int] = {}
    mismatch_tables: list[dict[str, Any]] = []
    items: list[SqlItem] = []
    population = 0
    for task in tasks:
        if task.get("source") != "sec10k":
            continue
        for op in _operands(task):
            population += 1
            world_id, table = task["world_id"], op.get("table")
            column, rlc, label = op.get("column"), op.get("row_label_column"), op.get("row_label")
            if not all(isinstance(x, str) for x in (table, column, rlc, label)):
                skipped["incomplete_operand"] = skipped.get("incomplete_operand", 0) + 1
                continue
            key = (world_id, table)
            if key not in json_columns:
                path = raw_dir / "sec10k_tables" / world_id / f"{table}.json"
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    json_columns[key] = list(data) if isinstance(data, dict) else None
                except (OSError, ValueError):
                    json_columns[key] = None
                cols = json_columns[key]
                wcols = world_columns.get(key)
                if cols is not None and wcols is not None and tuple(cols) != tuple(wcols):
                    mismatch_tables.append({
                        "world_id": world_id, "table": table,
                        "only_in_json": [c for c in cols if c not in wcols],
                        "only_in_world": [c for c in wcols if c not in cols],
                        "normalised_json_equals_world": [normalize_identifier(c) for c in cols] == list(wcols),
                    })
            cols = json_columns[key]
            if cols is None:
                skipped["no_raw_json"] = skipped.get("no_raw_json", 0) + 1
                continue
            if column not in cols or rlc not in cols:
                skipped["column_not_in_json"] = skipped.get("column_not_in_json", 0) + 1
                continue
            items.append(SqlItem(world_id, table, rlc, label, column, op.get("cell_text"),
                                 operand_query(op)))
    if not items:
        raise SystemExit("no sec10k gold operand has a raw JSON table: check --raw-dir")
    distinct = sorted(set(items), key=lambda it: (it.world_id, it.table, it.query))
    sql = rng.sample(distinct, min(n, len(distinct)))
    # GRPO samples a group of G completions per prompt, which query the same tables: each query is issued
    # by a whole group (order shuffled, as concurrent rollouts interleave)
    sql_grpo = [it for it in rng.sample(distinct, max(1, n // GROUP_SIZE)) for _ in range(GROUP_SIZE)]
    rng.shuffle(sql_grpo)

    # --- other tools: all tasks
    picked = rng.choices(tasks, k=n)
    descriptions = [t["world_id"] for t in picked]
    table_infos: list[tuple[str, str]] = []
    for t in rng.choices(tasks, k=n * 2):
        ops = _operands(t)
        if ops and isinstance(ops[0].get("table"), str):
            table_infos.append((t["world_id"], rng.choice(ops)["table"]))
        if len(table_infos) == n:
            break
    while len(table_infos) < n:  # tasks without operands: fall back to any table of the world
        table_infos.append(table_infos[len(table_infos) % max(len(table_infos), 1)] if table_infos
                           else (sql[0].world_id, sql[0].table))
    expressions = [_expression(t, rng) for t in rng.choices(tasks, k=n)]
    answers = []
    for t in rng.choices(tasks, k=n):
        g = t.get("gold_answer_text")
        answers.append(g if isinstance(g, str) and g.strip() else f"{rng.uniform(-1e4, 1e4):.2f}")
    return Workload(tasks, descriptions, table_infos, sql, expressions, answers,
                    sql_population=population, skipped=skipped, column_mismatch_tables=mismatch_tables,
                    sql_grpo=sql_grpo)


# ----------------------------------------------------------------------------- baseline
def cell_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def baseline_sql_query(raw_dir: Path, item: SqlItem) -> list[tuple]:
    """Reference-style tool call: JSON file -> fresh in-memory sqlite3 table -> query -> fetch -> close."""
    path = raw_dir / "sec10k_tables" / item.world_id / f"{item.table}.json"
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    columns = list(data)
    row_keys = sorted({k for cells in data.values() for k in cells}, key=int)
    rows = [tuple(cell_text(data[c].get(r)) for c in columns) for r in row_keys]
    con = sqlite3.connect(":memory:")
    try:
        con.execute(f"CREATE TABLE {quote_ident(item.table)} ({', '.join(quote_ident(c) + ' TEXT' for c in columns)})")
        con.executemany(f"INSERT INTO {quote_ident(item.table)} VALUES ({', '.join('?' * len(columns))})", rows)
        return con.execute(item.query).fetchall()
    finally:
        con.close()


# The reference tool's filter check: one of these SQL words must appear (as a word) in the query.
_REFERENCE_FILTER_WORDS = ("WHERE", "HAVING", "IN", "NOT IN", "EXISTS", "NOT EXISTS", "ANY", "SOME", "ALL",
                           "LIKE", "NOT LIKE", "BETWEEN", "NOT BETWEEN", "IS NULL", "IS NOT NULL", "CASE", "FILTER")
_REFERENCE_FILTER_RE = re.compile(r"(?<![\w\[])(?:" + "|".join(map(re.escape, _REFERENCE_FILTER_WORDS)) + r")(?![\w\]])")


def reference_sql_query(raw_dir: Path, item: SqlItem) -> str:
    """The per-call work of the reference OpenEnv FinQA tool (envs/finqa_env/server/tools.py,
    FinQATools.sql_query), re-implemented step for step: reject SELECT *, require a filter word, resolve
    the table file inside the company folder (realpath containment + isfile), then pandas read_json ->
    DataFrame.to_sql into a fresh in-memory sqlite3 database -> pd.read_sql_query -> to_json(records)."""
    import pandas as pd

    query = item.query
    if "select *" in query.lower():
        return "Error: SELECT * is not allowed"
    flat = re.sub(r"[\r\n\t]+", " ", query).upper()
    if not (any(f" {w} " in flat for w in _REFERENCE_FILTER_WORDS) or _REFERENCE_FILTER_RE.search(flat)):
        return "Error: Query must include filters"
    table = item.table.replace(".txt", "").replace(".json", "")
    companies = raw_dir / "sec10k_tables"
    root = os.path.realpath(companies)
    path = os.path.realpath(os.path.join(companies, item.world_id, f"{table}.json"))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return f"Error: Table file not found for '{item.world_id}/{item.table}'"
    conn = sqlite3.connect(":memory:")
    try:
        df = pd.read_json(path)
        df.to_sql(table, conn, index=False, if_exists="replace")
        return pd.read_sql_query(query, conn).to_json(orient="records")
    finally:
        conn.close()
