"""Great Expectations suites: they pass on good data, fail on bad data, and a failing check blocks downstream."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

import dagster as dg

from orchestration.defs import validation
from orchestration.defs.resources import Warehouse


def _tasks(n_single=100, n_multi=20, question="What was revenue in fiscal 2024 for Apple?"):
    rows = []
    for split in ("train", "val", "test"):
        for qtype, n in (("single_table", n_single), ("multi_table", n_multi)):
            for i in range(n):
                rows.append({"task_id": f"{split}-{qtype}-{i}", "question": question, "gold_value": 1.5 * (len(rows) + 1),
                             "split": split, "question_type": qtype, "gold_unit": "number"})
    return pd.DataFrame(rows)


def test_tasks_suite_passes_on_sane_tasks():
    outcome = validation.validate_tasks(_tasks())
    assert outcome.success, outcome.failed()


@pytest.mark.parametrize(
    "corrupt, failing_expectation",
    [
        (lambda t: t.assign(question=["" if i == 0 else q for i, q in enumerate(t.question)]), "expect_column_value_lengths_to_be_between"),
        (lambda t: t.assign(question="x" * 1000), "expect_column_value_lengths_to_be_between"),
        (lambda t: t.assign(gold_value=7.0), "expect_column_proportion_of_unique_values_to_be_between"),
        (lambda t: t.assign(gold_value=0.0), "expect_column_values_to_not_be_in_set"),
        (lambda t: t[~((t.split == "test") & (t.question_type == "multi_table"))], "expect_column_values_to_be_in_set"),
        (lambda t: t.assign(split="holdout"), "expect_column_values_to_be_in_set"),
    ],
    ids=["empty-question", "too-long-question", "constant-answers", "all-zero-answers", "missing-split-type", "bad-split"],
)
def test_tasks_suite_fails_on_bad_tasks(corrupt, failing_expectation):
    outcome = validation.validate_tasks(corrupt(_tasks()))
    assert not outcome.success
    assert failing_expectation in {r["expectation"] for r in outcome.failed()}


def _cells(parsed_share: float, n=200):
    n_parsed = int(n * parsed_share)
    return pd.DataFrame({
        "world_id": "w", "source": "sec10k", "table_name": "t", "row_index": range(n), "column_index": 1,
        "column_name": "2024", "cell_text": ["$1,234"] * n,
        "value": [1234.0] * n_parsed + [None] * (n - n_parsed), "value_kind": ["currency"] * n_parsed + [None] * (n - n_parsed),
    })


def test_world_cells_suite_checks_parse_coverage():
    assert validation.validate_world_cells(_cells(1.0)).success
    outcome = validation.validate_world_cells(_cells(0.5))
    assert not outcome.success
    assert {r["expectation"] for r in outcome.failed()} == {"expect_column_mean_to_be_between"}


def test_a_failing_blocking_check_stops_downstream_assets(tmp_path):
    """The real GX check on `tasks` fails on corrupted tasks, and the asset downstream of tasks never runs."""
    warehouse = tmp_path / "w.duckdb"

    @dg.asset(key=["marts", "tasks"])
    def tasks_with_empty_questions(warehouse: Warehouse) -> None:
        bad = _tasks(question="")
        with warehouse.connect() as con:
            con.execute("create schema if not exists marts")
            con.execute("create table marts.tasks as select * from bad")

    ran = []

    @dg.asset(deps=[dg.AssetKey(["marts", "tasks"])])
    def downstream() -> None:
        ran.append(True)

    result = dg.materialize(
        [tasks_with_empty_questions, downstream, validation.gx_tasks_suite],
        resources={"warehouse": Warehouse(path=str(warehouse))},
        raise_on_error=False,
    )
    evaluations = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(e.check_name, e.passed) for e in evaluations] == [("gx_tasks_suite", False)]
    assert ran == []
    assert not result.success


def test_a_failed_expectation_names_the_offending_rows():
    tasks = _tasks()
    tasks.loc[3, "question"] = "x" * 1_000_000  # e.g. a row label of 1 MB pasted into a question
    outcome = validation.validate_tasks(tasks)
    failed = [r for r in outcome.failed() if r["expectation"] == "expect_column_value_lengths_to_be_between"]
    assert failed and failed[0]["offending_rows"][0]["task_id"] == tasks.loc[3, "task_id"]
    assert len(failed[0]["offending_rows"][0]["question"]) < 100  # named, not copied
    result = validation._check_result(outcome, len(tasks))
    assert tasks.loc[3, "task_id"] in result.description


def _warehouse_with(path, tasks_by_source: dict[str, int], records_by_source: dict[str, int]) -> str:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema raw; create schema marts")
        for table, source in (("sec10k_tables", "sec10k"), ("finqa_questions", "finqa"), ("tatqa_questions", "tatqa")):
            con.execute(f"create table raw.{table} as select range as id from range({records_by_source.get(source, 0)})")
        con.execute("create table marts.tasks (task_id varchar, source varchar)")
        for source, n in tasks_by_source.items():
            con.execute(f"insert into marts.tasks select '{source}' || range, '{source}' from range({n})")
    return str(path)


def test_every_source_with_records_must_yield_tasks(tmp_path):
    ok = _warehouse_with(tmp_path / "ok.duckdb", {"sec10k": 5, "finqa": 2, "tatqa": 1}, {"sec10k": 9, "finqa": 9, "tatqa": 9})
    assert validation.tasks_per_source(ok)[0]
    no_files = _warehouse_with(tmp_path / "none.duckdb", {"sec10k": 5}, {"sec10k": 9})  # finqa / tatqa absent: fine
    assert validation.tasks_per_source(no_files)[0]
    lost = _warehouse_with(tmp_path / "lost.duckdb", {"sec10k": 5, "tatqa": 3}, {"sec10k": 9, "finqa": 9, "tatqa": 9})
    passed, counts = validation.tasks_per_source(lost)
    assert not passed and counts["finqa"] == {"records": 9, "tasks": 0}
    result = validation.tasks_per_source_check(Warehouse(path=lost))
    assert not result.passed and "finqa" in result.description
