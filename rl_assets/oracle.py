"""The oracle policy: solves a task from its gold spec *through the environment's real tools*.

For each task it lists the company's tables, inspects every gold table, fetches every gold operand
with a filtered `sql_query`, computes the answer with `calculator` (the synthesised template, the
TAT-QA derivation, or the FinQA program step by step) and submits it. A task the oracle cannot solve
is a curation bug (a gold spec that does not match the world), reported with its reason.

`evaluate_oracle(snapshot)` runs it over every task and reports the pass rate per task set.
`check_and_publish(staged)` is a snapshot's blocking check: it publishes a staged snapshot
(rl_assets.snapshot) only when every task set passes at >= MIN_PASS_RATE, with the result (and the
tasks it could not solve, with reasons) in the manifest; otherwise it deletes the staged copy and raises
SnapshotCheckFailed.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import duckdb

from rl_assets import grading, programs
from rl_assets.env import FinQAEnv, close_world
from rl_assets.sandbox import quote_literal, result_rows
from rl_assets.snapshot import Snapshot, discard_staged, is_published, publish_snapshot
from rl_assets.versioning import code_version, module_closure

TASK_SETS = ("single_table", "multi_table")
MIN_PASS_RATE = 0.98  # per task set, for a snapshot to be published


class OracleFailure(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class OracleResult:
    task_id: str
    correct: bool
    reason: str  # 'solved' or why not
    detail: str = ""
    submitted: str | None = None


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def operand_query(op: dict[str, Any]) -> str:
    """The filtered SQL the oracle uses to fetch one gold operand."""
    return (
        f"SELECT {quote_identifier(op['column'])} FROM {quote_identifier(op['table'])} "
        f"WHERE {quote_identifier(op['row_label_column'])} = {quote_literal(op['row_label'])}"
    )


def solve(env: FinQAEnv, task: dict[str, Any]) -> OracleResult:
    env.reset(**task)
    try:
        answer = _solve(env, task)
    except OracleFailure as failure:
        return OracleResult(task["task_id"], False, failure.reason, failure.detail)
    env.submit_answer(answer)
    report = env.report
    correct = report["reward"] == 1.0
    return OracleResult(
        task["task_id"],
        correct,
        "solved" if correct else "wrong_answer",
        "" if correct else f"submitted {answer}, gold {task['gold_value']} ({task['gold_unit']}): {report['rubric']['grade_reason']}",
        answer,
    )


def _solve(env: FinQAEnv, task: dict[str, Any]) -> str:
    company = task["world_id"]
    operands = json.loads(task["gold_operands"])
    env.get_descriptions(company)
    for table in dict.fromkeys(op["table"] for op in operands):
        info = env.get_table_info(company, table)
        if info.startswith("Error"):
            raise OracleFailure("table_info_failed", info)
    values = [_fetch(env, company, op) for op in operands]
    kind = task["gold_program_kind"]
    if kind == "template":
        expression = re.sub(r"\ba(\d+)\b", lambda m: f"({values[int(m.group(1))]!r})", task["gold_expression"])
        return _calculate(env, expression)
    by_literal = _values_by_literal(operands, values)
    resolve = lambda number: by_literal.get(number.magnitude)  # noqa: E731 - literal -> fetched value
    try:
        if kind == "tatqa_derivation":
            derivation = programs.parse_derivation(task["gold_expression"], task.get("gold_scale"))
            return _calculate(env, derivation.to_calculator(resolve))
        if kind == "finqa_program":
            return _run_finqa_program(env, programs.parse_finqa_program(task["gold_expression"]), resolve)
    except programs.ProgramError as e:
        raise OracleFailure("unsupported_program", f"{task['gold_expression']}: {e}") from None
    raise OracleFailure("unknown_program_kind", kind)


def _fetch(env: FinQAEnv, company: str, op: dict[str, Any]) -> float:
    output = env.sql_query(company, op["table"], operand_query(op))
    if output.startswith("Error"):
        raise OracleFailure("query_failed", output)
    try:
        rows = result_rows(output)  # the JSON rows, without a note after them
    except ValueError:
        raise OracleFailure("unparsable_query_output", output[:200]) from None
    cells = [next(iter(r.values())) for r in rows if r]
    if not cells:
        raise OracleFailure("operand_not_found", f"{op['table']}.{op['column']} where {op['row_label']!r}: no rows")
    # a row label may repeat in a table: the gold spec names the exact cell text
    text = op["cell_text"] if op["cell_text"] in cells else cells[0]
    parsed = grading.parse_number(text)
    if parsed is None:
        raise OracleFailure("operand_not_numeric", f"{text!r} in {op['table']}.{op['column']}")
    if abs(parsed.value - op["value"]) > 1e-9 * max(1.0, abs(op["value"])):
        raise OracleFailure("operand_parse_mismatch", f"{text!r}: tool text parses to {parsed.value}, world value {op['value']}")
    return parsed.value


def _values_by_literal(operands: list[dict[str, Any]], values: list[float]) -> dict[float, float]:
    """|number as written in the gold program| -> |value fetched through the tools| (the program keeps the sign)."""
    out: dict[float, float] = {}
    for op, value in zip(operands, values):
        magnitude = programs.number_magnitude(op["literal"])
        if magnitude is not None:
            out[magnitude] = abs(value)
    return out


def _calculate(env: FinQAEnv, expression: str) -> str:
    output = env.calculator(expression)
    if output.startswith("Error"):
        raise OracleFailure("calculator_failed", f"{expression}: {output}")
    return output


def _run_finqa_program(env: FinQAEnv, program: programs.FinQAProgram, resolve) -> str:
    """Each step through the calculator, earlier results fed in as the calculator printed them."""
    results: list[str] = []
    for index in range(len(program.steps)):
        results.append(_calculate(env, program.step_expression(index, results, resolve)))
    if not results:
        raise OracleFailure("unsupported_program", program.text)
    return results[-1]


@dataclass
class OracleReport:
    task_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def passed(self, min_rate: float) -> bool:
        return all(s["pass_rate"] >= min_rate for s in self.task_sets.values() if s["tasks"])

    def manifest_record(self, min_pass_rate: float, checked_code_version: str) -> dict[str, Any]:
        """The check result as a snapshot manifest records it (`oracle`)."""
        tasks = sum(s["tasks"] for s in self.task_sets.values())
        return {
            "passed": self.passed(min_pass_rate),
            "min_pass_rate": min_pass_rate,
            "task_sets": self.task_sets,
            "by_source": self.by_source,
            "solved": tasks - len(self.failures),
            "unsolved_count": len(self.failures),
            "unsolved": [{"task_id": f["task_id"], "reason": f["reason"], "detail": f["detail"]} for f in self.failures],
            "code_version": checked_code_version,
        }


class SnapshotCheckFailed(Exception):
    """A snapshot's oracle check did not pass: a staged snapshot was deleted, never published."""

    def __init__(self, snapshot: Snapshot, report: OracleReport, record: dict[str, Any]):
        rates = ", ".join(f"{name} {s['pass_rate']:.4f} ({s['passed']}/{s['tasks']})" for name, s in report.task_sets.items())
        reasons = Counter(f["reason"] for f in report.failures).most_common(5)
        state = ("it stays published (published snapshots are immutable): fix the code or the data"
                 if snapshot.published else "it was not published and its staged copy was deleted")
        super().__init__(
            f"snapshot {snapshot.hash} fails its oracle check (pass rate per task set: {rates}; "
            f"required >= {record['min_pass_rate']}); most common reasons: {reasons}; {state}"
        )
        self.snapshot = snapshot
        self.report = report
        self.record = record


def snapshot_code_version() -> str:
    """Code version of everything that writes and checks a snapshot (snapshot, oracle and what they use)."""
    return code_version(*module_closure("rl_assets.snapshot", "rl_assets.oracle"))


def check_and_publish(
    snapshot: Snapshot,
    min_pass_rate: float = MIN_PASS_RATE,
    progress: Callable[[str], None] | None = None,
) -> tuple[Snapshot, OracleReport, dict[str, Any]]:
    """Run the oracle on a staged snapshot and publish it when it passes: (published snapshot, report, record).

    An already published snapshot (same content exported again) is checked again under the current code
    and returned as it is. Raises SnapshotCheckFailed when a task set falls below `min_pass_rate`.
    """
    report = evaluate_oracle(snapshot.path, progress=progress)
    record = report.manifest_record(min_pass_rate, snapshot_code_version())
    if not record["passed"]:
        if not snapshot.published:
            discard_staged(snapshot)
        raise SnapshotCheckFailed(snapshot, report, record)
    if snapshot.published:
        return snapshot, report, record
    return publish_snapshot(snapshot, record), report, record


def load_tasks(snapshot: str | Path) -> list[dict[str, Any]]:
    """Every task of the snapshot (the oracle check itself must see the ones it cannot solve)."""
    with duckdb.connect() as con:
        cursor = con.execute(f"SELECT * FROM read_parquet('{Path(snapshot) / 'tasks.parquet'}') ORDER BY task_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def evaluate_oracle(
    snapshot: str | Path,
    tasks: Iterable[dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every: int = 1000,
) -> OracleReport:
    """Run the oracle on every task (default: all tasks of the snapshot); `progress` gets a line every N tasks.

    Works on a staged snapshot too (the check runs before publication)."""
    published = is_published(snapshot)
    env = FinQAEnv(snapshot=snapshot, require_published=False)
    totals: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, Counter] = defaultdict(Counter)
    report = OracleReport()
    task_list = list(tasks) if tasks is not None else load_tasks(snapshot)
    for i, task in enumerate(task_list, start=1):
        result = solve(env, task)
        totals[task["question_type"]]["tasks"] += 1
        totals[task["question_type"]]["passed"] += result.correct
        sources[task["source"]]["tasks"] += 1
        sources[task["source"]]["passed"] += result.correct
        if not result.correct:
            report.failures.append(
                {"task_id": result.task_id, "source": task["source"], "question_type": task["question_type"],
                 "reason": result.reason, "detail": result.detail[:300]}
            )
        if progress is not None and (i % progress_every == 0 or i == len(task_list)):
            progress(f"oracle: {i}/{len(task_list)} tasks, {len(report.failures)} failures")
    for name in TASK_SETS:
        c = totals[name]
        report.task_sets[name] = {"tasks": c["tasks"], "passed": c["passed"],
                                  "pass_rate": c["passed"] / c["tasks"] if c["tasks"] else 1.0}
    for name, c in sorted(sources.items()):
        report.by_source[name] = {"tasks": c["tasks"], "passed": c["passed"], "pass_rate": c["passed"] / c["tasks"]}
    if not published:
        close_world(snapshot)  # a staged directory is renamed or deleted next
    return report
