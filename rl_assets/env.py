"""The FinQA tool environment: an agent answers a financial question by listing a company's tables,
inspecting their schema, running filtered SQL, calculating, and submitting an answer.

    from rl_assets.env import FinQAEnv
    env = FinQAEnv(snapshot="data/snapshots/<hash>")
    prompt = env.reset(**task_row)              # a row of the snapshot's tasks.parquet
    env.get_descriptions("apple")
    env.get_table_info("apple", "us_gaap_ScheduleOfComponentsOfIncomeTaxExpenseBenefitTableTextBlock")
    env.sql_query("apple", "us_gaap_...", "SELECT \"2024\" FROM us_gaap_... WHERE category = 'federal'")
    env.calculator("(29749 - 16741) / 16741 * 100")
    env.submit_answer("77.7%")
    env.get_reward()                            # 1.0 if correct else 0.0
    env.report                                  # telemetry + behaviour rubric (JSON-serialisable)

Compatible with TRL 1.16 `GRPOTrainer(environment_factory=lambda: FinQAEnv(snapshot=...))`: the public
methods are the tools (their docstrings become the tool schema), `reset(**row)` starts an episode and
`get_reward()` grades it. Every tool returns a string and never raises: errors are clear messages
that name what exists. The world's tables are real relational DuckDB tables opened read-only from the
snapshot (rl_assets.sandbox), shared by all environments of a process.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import duckdb

from rl_assets import calculator as calc
from rl_assets import grading, sandbox
from rl_assets.snapshot import WORLD_DB, latest_snapshot, read_manifest, snapshots_root
from rl_assets.snapshot import require_published as check_published
from rl_assets.telemetry import ToolCall, behaviour_rubric

DESCRIPTION_CHARS = 160  # per table in get_descriptions
TABLE_LIST_CHARS = 3500  # table names listed in an unknown-table error
COMPANY_LIST_CHARS = 1500  # company names listed in an unknown-company error


@dataclass(frozen=True)
class TableInfo:
    world_id: str
    table_name: str
    description: str
    columns: tuple[str, ...]
    row_label_column: str
    row_labels: tuple[str, ...]
    value_kinds: dict[str, list[str]]  # column -> kinds of numbers found in it (currency, percent, ...)


class World:
    """The tables of every company in a snapshot, and one hardened read-only DuckDB connection to them."""

    def __init__(self, snapshot: Path, limits: sandbox.SandboxLimits):
        self.snapshot = snapshot
        self.con = sandbox.open_world_db(snapshot / WORLD_DB, limits)
        self.result_cache = sandbox.ResultCache()
        self.snapshot_hash = read_manifest(snapshot).get("snapshot_hash", snapshot.name)
        self.tables: dict[str, dict[str, TableInfo]] = {}
        self._by_lower: dict[str, dict[str, str]] = {}
        meta = duckdb.connect()
        try:
            tables = meta.execute(
                f"SELECT world_id, table_name, description, columns_json, row_label_column "
                f"FROM read_parquet('{snapshot / 'world_tables.parquet'}') ORDER BY world_id, table_name"
            ).fetchall()
            labels: dict[tuple[str, str], list[str]] = {}
            for world_id, table_name, label in meta.execute(
                f"SELECT world_id, table_name, row_label FROM read_parquet('{snapshot / 'world_cells.parquet'}') "
                "WHERE column_index = 0 ORDER BY world_id, table_name, row_index"
            ).fetchall():
                labels.setdefault((world_id, table_name), []).append(label or "")
            kinds: dict[tuple[str, str], dict[str, list[str]]] = {}
            for world_id, table_name, column, kind_list in meta.execute(
                f"SELECT world_id, table_name, column_name, list(DISTINCT value_kind ORDER BY value_kind) "
                f"FROM read_parquet('{snapshot / 'world_cells.parquet'}') "
                "WHERE column_index > 0 AND value_kind IS NOT NULL GROUP BY ALL"
            ).fetchall():
                kinds.setdefault((world_id, table_name), {})[column] = list(kind_list)
        finally:
            meta.close()
        for world_id, table_name, description, columns_json, row_label_column in tables:
            info = TableInfo(
                world_id=world_id,
                table_name=table_name,
                description=description or "",
                columns=tuple(json.loads(columns_json)),
                row_label_column=row_label_column,
                row_labels=tuple(labels.get((world_id, table_name), [])),
                value_kinds=kinds.get((world_id, table_name), {}),
            )
            self.tables.setdefault(world_id, {})[table_name] = info
            self._by_lower.setdefault(world_id.lower(), {})[table_name.lower()] = table_name

    def resolve_company(self, company_name: Any) -> str | None:
        key = str(company_name).strip().lower().replace(" ", "_")
        return key if key in self.tables else None

    def resolve_table(self, world_id: str, table_name: Any) -> str | None:
        return self._by_lower.get(world_id, {}).get(str(table_name).strip().lower())


_WORLDS: dict[tuple[str, str], World] = {}
_WORLDS_LOCK = threading.Lock()


def load_world(snapshot: str | os.PathLike, limits: sandbox.SandboxLimits = sandbox.SandboxLimits()) -> World:
    """The World of a snapshot, loaded once per process and shared by every environment."""
    path = Path(snapshot).resolve()
    with _WORLDS_LOCK:
        # one connection per file and memory limit: DuckDB refuses a second connection to the same file
        # with another configuration. Row, character and time limits are per call, so environments
        # with different SandboxLimits (same memory_limit) share the world.
        key = (str(path), limits.memory_limit)
        if key not in _WORLDS:
            if any(p == str(path) for p, _ in _WORLDS):
                raise ValueError(
                    f"{path} is already open with another memory_limit in this process; "
                    "use the same SandboxLimits.memory_limit for every environment on one snapshot"
                )
            _WORLDS[key] = World(path, limits)
        return _WORLDS[key]


def close_world(snapshot: str | os.PathLike) -> None:
    """Forget the World of a snapshot in this process and close its connection (environments still using it
    break): for a staged snapshot after its oracle check, before it is renamed or deleted."""
    path = str(Path(snapshot).resolve())
    with _WORLDS_LOCK:
        for key in [k for k in _WORLDS if k[0] == path]:
            _WORLDS.pop(key).con.close()


def default_snapshot() -> Path:
    """The newest *published* snapshot (one that passed its oracle check) under $FINQA_RL_SNAPSHOTS_DIR, else
    under <repository>/data/snapshots; the same from any current directory."""
    return latest_snapshot(snapshots_root())


class FinQAEnv:
    """One agent episode at a time over the companies of a snapshot. See the module docstring."""

    def __init__(
        self,
        snapshot: str | os.PathLike | None = None,
        limits: sandbox.SandboxLimits = sandbox.SandboxLimits(),
        rel_tol: float = 0.01,
        cache_results: bool = True,
        description_chars: int = DESCRIPTION_CHARS,
        splits: Iterable[str] | None = None,
        scope_to_task_company: bool = True,
        grading_mode: str = "strict",
        require_published: bool = True,
    ):
        """
        Args:
            snapshot: a published snapshot directory (default: default_snapshot(), the newest published one).
            limits: sandbox limits for sql_query (rows, characters, time; memory per process and snapshot).
            rel_tol: relative tolerance of the grader.
            cache_results: memoise sql_query results (the world is read-only).
            description_chars: characters of each table description in get_descriptions; 0 lists names
                only (the longest listing, citibank, is ~14k characters at 160, ~4k at 0: tool outputs count
                towards TRL's max_completion_length).
            splits: the task splits this environment accepts (e.g. ("train",) for a trainer); reset() with a
                task of another split raises ValueError. None accepts every split.
            scope_to_task_company: the tools answer only for the episode's company (the task's world_id);
                any other company is an error (kind "other_company"). False opens the whole world.
            grading_mode: "strict" (default: what an answer states must agree with the gold) or "reference"
                (the OpenEnv FinQA reward rule, to compare with published scores); see rl_assets.grading.
            require_published: refuse a snapshot that has not passed its oracle check (UnpublishedSnapshotError).
                Only the oracle check itself, which runs before publication, sets it to False.
        """
        if grading_mode not in grading.GRADING_MODES:
            raise ValueError(f"grading_mode must be one of {grading.GRADING_MODES}, not {grading_mode!r}")
        if snapshot is None:
            snapshot = default_snapshot()
        elif require_published:
            check_published(snapshot)
        self._world = load_world(snapshot, limits)
        self._limits = limits
        self._rel_tol = rel_tol
        self._grading_mode = grading_mode
        self._description_chars = description_chars
        self._splits = frozenset(splits) if splits is not None else None
        self._scope_to_task_company = scope_to_task_company
        # the world is read-only: identical queries give identical results, so they are memoised
        # per process (shared by all environments on this snapshot); see sandbox.ResultCache
        self._cache = self._world.result_cache if cache_results else None
        self._task: dict[str, Any] = {}
        self._calls: list[ToolCall] = []
        self._submitted: str | None = None
        self._grade: grading.Grade | None = None

    # ------------------------------------------------------------------ episode
    def reset(self, **task: Any) -> str:
        """Start an episode for one task (a row of tasks.parquet); returns the task text for the agent
        ("\n\nCompany: <company_name>\nQuestion: <question>", which TRL appends to the user prompt).

        Raises ValueError when the environment was created for other splits than the task's."""
        if self._splits is not None and task.get("split") not in self._splits:
            raise ValueError(
                f"task {task.get('task_id')!r} is in split {task.get('split')!r}; this environment accepts only "
                f"{sorted(self._splits)} (FinQAEnv(splits=...))"
            )
        self._task = dict(task)
        self._calls = []
        self._submitted = None
        self._grade = None
        company = task.get("world_id") or task.get("company_name") or ""
        question = task.get("question", "")
        # TRL appends this observation to the prompt's last user message: start on a new paragraph
        return f"\n\nCompany: {company}\nQuestion: {question}"

    def get_reward(self) -> float:
        """1.0 if the submitted answer is correct (see rl_assets.grading), else 0.0."""
        return 1.0 if self._grade_answer().correct else 0.0

    @property
    def tool_calls(self) -> list[ToolCall]:
        return list(self._calls)

    @property
    def report(self) -> dict[str, Any]:
        """Telemetry and behaviour rubric of the current episode (JSON-serialisable): task_id, snapshot_hash,
        reward, grading_mode, rubric, tool_calls."""
        grade = self._grade_answer()
        rubric = behaviour_rubric(self._calls, self._submitted, grade.correct, grade.reason)
        return {
            "task_id": self._task.get("task_id"),
            "snapshot_hash": self._world.snapshot_hash,
            "reward": 1.0 if grade.correct else 0.0,
            "grading_mode": self._grading_mode,
            "rubric": rubric.asdict(),
            "tool_calls": [c.asdict() for c in self._calls],
        }

    # ------------------------------------------------------------------ tools
    def get_descriptions(self, company_name: str) -> str:
        """List the tables of a company's filing, with a short description of each.

        Args:
            company_name: The company, exactly as given in the task (e.g. "apple").

        Returns:
            A JSON list of {"table_name", "description"} objects (or of table names).
        """
        return self._call("get_descriptions", {"company_name": company_name}, self._descriptions)

    def get_table_info(self, company_name: str, table_name: str) -> str:
        """Describe one table: its description, columns with their types, and row labels (not the numbers).

        Args:
            company_name: The company, exactly as given in the task.
            table_name: A table name returned by get_descriptions.

        Returns:
            A JSON object with table_name, description, columns (name, dtype, number kinds), row_label_column
            and row_labels.
        """
        return self._call(
            "get_table_info", {"company_name": company_name, "table_name": table_name}, self._table_info
        )

    def sql_query(self, company_name: str, table_name: str, query: str) -> str:
        """Run one read-only SQL SELECT (DuckDB dialect) on one table of the company.

        Only filtered queries are allowed: no SELECT *, and the query needs a WHERE, HAVING, LIMIT or an
        aggregate. Cells are text as printed in the filing (e.g. '$61,307', '(1,234)', '3.4%'); quote
        column names that are numbers, e.g. SELECT "2024" FROM my_table WHERE metric = 'revenue'.

        Args:
            company_name: The company, exactly as given in the task.
            table_name: The table to query; the query may reference only this table.
            query: The SQL query.

        Returns:
            The result rows as JSON (an empty result whose filter names no row label adds the closest
            labels), or an error message explaining what to fix.
        """
        return self._call(
            "sql_query", {"company_name": company_name, "table_name": table_name, "query": query}, self._sql
        )

    def calculator(self, expression: str) -> str:
        """Evaluate an arithmetic expression: numbers, + - * / ** and parentheses (e.g. "(120 - 100) / 100 * 100").

        Args:
            expression: The expression to evaluate.

        Returns:
            The result as a number, or an error message.
        """
        return self._call("calculator", {"expression": expression}, self._calculate)

    def submit_answer(self, answer: str) -> str:
        """Submit the final answer to the question. Only the first submission counts.

        Args:
            answer: The answer, e.g. "77.7%", "-1,234" or "1.25".

        Returns:
            A confirmation message.
        """
        return self._call("submit_answer", {"answer": answer}, self._submit)

    # ------------------------------------------------------------------ implementation
    def _call(self, tool: str, arguments: dict[str, Any], fn) -> str:
        started = time.perf_counter()
        try:
            text, error_kind, rows = fn(**arguments)
        except Exception as e:  # a tool must never crash the trainer
            text, error_kind, rows = f"Error: internal error in {tool}: {type(e).__name__}: {e}", "internal_error", 0
        self._calls.append(
            ToolCall(
                step=len(self._calls),
                tool=tool,
                arguments={k: v if isinstance(v, (str, int, float, bool)) or v is None else repr(v) for k, v in arguments.items()},
                ok=error_kind is None,
                error_kind=error_kind,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                rows=rows,
                chars=len(text),
            )
        )
        return text

    def _company(self, company_name: Any) -> tuple[str | None, str | None, str | None]:
        """(world_id, None, None), or (None, error message, error kind)."""
        if not isinstance(company_name, str) or not company_name.strip():
            return None, "Error: company_name must be a non-empty string, e.g. the company given in the task.", "bad_arguments"
        world_id = self._world.resolve_company(company_name)
        if world_id is None:
            close = difflib.get_close_matches(company_name.strip().lower(), list(self._world.tables), n=5, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            expected = self._task.get("world_id")
            task_hint = f" The company for this task is {expected!r}." if expected else ""
            known = _bounded_list(sorted(self._world.tables), COMPANY_LIST_CHARS, "companies")
            return None, f"Error: unknown company {company_name!r}.{hint}{task_hint} Companies: {known}", "unknown_company"
        expected = self._task.get("world_id")
        if self._scope_to_task_company and expected and world_id != expected:
            return None, (f"Error: this episode is about company {expected!r}; the tools answer only for it, "
                          f"not for {world_id!r}."), "other_company"
        return world_id, None, None

    def _table(self, world_id: str, table_name: Any) -> tuple[TableInfo | None, str | None, str | None]:
        """(table info, None, None), or (None, error message, error kind)."""
        if not isinstance(table_name, str) or not table_name.strip():
            return None, "Error: table_name must be a non-empty string; call get_descriptions to list the tables.", "bad_arguments"
        resolved = self._world.resolve_table(world_id, table_name)
        if resolved is None or resolved not in self._listed_tables(world_id):
            names = self._shown_table_names(world_id)
            close = difflib.get_close_matches(table_name.strip(), names, n=3, cutoff=0.5)
            hint = f" Closest: {', '.join(close)}." if close else ""
            listing = _bounded_list(names, TABLE_LIST_CHARS, "tables (see get_descriptions)")
            return None, f"Error: unknown table {table_name!r} for company {world_id!r}.{hint} Tables: {listing}", "unknown_table"
        return self._world.tables[world_id][resolved], None, None

    def _listed_tables(self, world_id: str) -> dict[str, TableInfo]:
        """The company's tables in this episode, by name: every one (a trainer's subclass may show a subset; a
        table not listed is unknown to every tool)."""
        return self._world.tables[world_id]

    def _shown_column_names(self, info: TableInfo) -> dict[str, str]:
        """Real column -> the name the agent is shown, for the columns shown under another name: none here (a
        subclass that renames columns returns its renames)."""
        return {}

    def _shown_table_names(self, world_id: str) -> list[str]:
        """The company's table names as the agent is shown them (an unknown-table error's hint is picked among
        these: a subclass that renames tables returns the names it shows)."""
        return list(self._listed_tables(world_id))

    def _descriptions(self, company_name: Any):
        world_id, error, kind = self._company(company_name)
        if error:
            return error, kind, 0
        if self._description_chars <= 0:
            return json.dumps(list(self._listed_tables(world_id)), ensure_ascii=False), None, 0
        tables = [
            {"table_name": t.table_name, "description": _shorten(t.description, self._description_chars)}
            for t in self._listed_tables(world_id).values()
        ]
        return json.dumps(tables, ensure_ascii=False), None, 0

    def _table_info(self, company_name: Any, table_name: Any):
        world_id, error, kind = self._company(company_name)
        if error:
            return error, kind, 0
        info, error, kind = self._table(world_id, table_name)
        if error:
            return error, kind, 0
        shown = self._shown_column_names(info)
        columns = [
            {
                "name": shown.get(c, c),
                "dtype": "VARCHAR",
                **({"number_kinds": info.value_kinds[c]} if c in info.value_kinds else {}),
            }
            for c in info.columns
        ]
        labels = list(info.row_labels)
        payload = {
            "table_name": info.table_name,
            "description": info.description,
            "columns": columns,
            "row_label_column": shown.get(info.row_label_column, info.row_label_column),
            "row_labels": labels[:200],
            "n_rows": len(labels),
            "note": table_note([c["name"] for c in columns]),
        }
        return json.dumps(payload, ensure_ascii=False), None, 0

    def _sql(self, company_name: Any, table_name: Any, query: Any):
        world_id, error, kind = self._company(company_name)
        if error:
            return error, kind, 0
        info, error, kind = self._table(world_id, table_name)
        if error:
            return error, kind, 0
        if not isinstance(query, str):
            return "Error: query must be a string containing one SELECT statement.", "bad_arguments", 0
        result = sandbox.run_query(
            self._world.con, world_id, info.table_name, query, self._limits,
            columns=info.columns, cache=self._cache,
        )
        if result.ok:
            text = result.text + (no_rows_hint(info, query, self._shown_column_names(info)) if result.rows == 0 else "")
            return text, None, result.rows
        return result.text, result.error_kind, 0

    def _calculate(self, expression: Any):
        try:
            value = calc.evaluate(expression)
        except calc.CalculatorError as e:
            return f"Error: {e}", "calculator_error", 0
        return calc.format_number(value), None, 0

    def _submit(self, answer: Any):
        if self._submitted is not None:
            return f"Error: an answer was already submitted ({self._submitted!r}); only the first counts.", "already_answered", 0
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            return "Error: answer must be a non-empty string.", "bad_arguments", 0
        self._submitted = str(answer)
        self._grade = None
        return f"Answer submitted: {self._submitted}", None, 0

    def _grade_answer(self) -> grading.Grade:
        if self._grade is None:
            gold = self._task.get("gold_value")
            if gold is None or (isinstance(gold, float) and math.isnan(gold)):
                self._grade = grading.Grade(False, None, "invalid_gold")
            else:
                self._grade = grading.grade(
                    self._submitted,
                    float(gold),
                    gold_unit=_text_or(self._task.get("gold_unit"), "number"),
                    gold_scale=_text_or(self._task.get("gold_scale"), None),
                    rel_tol=self._rel_tol,
                    mode=self._grading_mode,
                )
        return self._grade


def table_note(columns: Iterable[str]) -> str:
    """How to read and query one table; its quoting example is one of its own columns (sandbox.quoting_example)."""
    note = "Cells are text as printed: '$', ',' and '%' are kept, and '(56)' is negative."
    quoted = sandbox.quoting_example(columns)
    if quoted:
        note += f" Quote column names that are not plain words in SQL, as in {quoted}."
    return note


ROW_LABELS_IN_HINT = 3  # closest row labels named under an empty result
ROW_LABEL_LIST_CHARS = 600  # the labels listed under an empty result when none is close (get_table_info has them all)
_STRING_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def no_rows_hint(info: TableInfo, query: str, shown_columns: dict[str, str]) -> str:
    """What an empty result adds when the query compares the row-label column with a text that is no row label:
    the closest row labels, whatever their case (`'acquired licenses'` -> `'Acquired licenses and other
    intangibles'`), or the labels themselves. Empty for any other empty result (a filter on a value column, a
    LIKE pattern, a label that exists)."""
    labels = [label for label in info.row_labels if label]
    label_column = shown_columns.get(info.row_label_column, info.row_label_column)
    if not labels or label_column.lower() not in query.lower():
        return ""
    known = set(labels)
    missing = [text for text in (m.replace("''", "'") for m in _STRING_LITERAL.findall(query))
               if text not in known and "%" not in text]
    if not missing:
        return ""
    by_lower = {label.lower(): label for label in reversed(labels)}  # the first of labels that differ in case only
    close = difflib.get_close_matches(missing[0].lower(), list(by_lower), n=ROW_LABELS_IN_HINT, cutoff=0.5)
    head = f"\nNo row has {sandbox.quote_column(label_column)} = {sandbox.quote_literal(missing[0])}."
    if close:
        return head + " Closest row labels: " + ", ".join(sandbox.quote_literal(by_lower[c]) for c in close) + "."
    return head + " Row labels: " + _bounded_list([sandbox.quote_literal(label) for label in labels], ROW_LABEL_LIST_CHARS, "labels") + "."


def _text_or(value: Any, default: str | None) -> str | None:
    """Task rows from pandas / datasets may carry NaN or None for a missing string."""
    return value if isinstance(value, str) and value else default


def _bounded_list(names: list[str], max_chars: int, what: str) -> str:
    """Comma-separated whole names up to max_chars, with a count of the rest."""
    shown: list[str] = []
    used = 0
    for name in names:
        if used + len(name) + 2 > max_chars:
            return ", ".join(shown) + f", ... and {len(names) - len(shown)} more {what}"
        shown.append(name)
        used += len(name) + 2
    return ", ".join(shown)


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
