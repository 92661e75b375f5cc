"""Great Expectations 1.x suites as blocking Dagster asset checks on `tasks` and `world_cells`.

GX cannot validate a DuckDB SQL datasource (see docs/architecture.md), so each check reads the mart
through a read-only DuckDB connection (holding the warehouse lock shared: orchestration.defs.resources)
into pandas and validates it with GX's pandas datasource.
The suites are plain functions (`validate_tasks`, `validate_world_cells`) so they can be run and
tested without Dagster; the checks only wire them to the assets.
"""


import logging
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from orchestration.defs.resources import Warehouse, connect_warehouse
from rl_assets.raw import MAX_QUESTION_CHARS, SOURCES

# Minimum tasks per (split, question_type). Real questions are never in train, so these bounds are on
# all sources together. Change them here, in one place.
MIN_TASKS_PER_SPLIT = {"single_table": 100, "multi_table": 20}
QUESTION_LENGTH = (15, MAX_QUESTION_CHARS)  # the raw loaders quarantine longer questions, dbt longer synthesised ones
ID_COLUMNS = {"tasks": ["task_id"], "world_cells": ["world_id", "table_name", "row_index", "column_index"]}
OFFENDING_ROWS = 20  # offending rows named in a failed expectation's metadata
MIN_NUMERIC_PARSE_COVERAGE = 0.95  # share of value cells containing a digit that parse as a number
MAX_ABS_GOLD_VALUE = 1e15


@dataclass
class SuiteOutcome:
    success: bool
    results: list[dict[str, Any]] = field(default_factory=list)

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["success"]]

    def metadata(self) -> dict[str, Any]:
        return {
            "expectations": len(self.results),
            "failed": len(self.failed()),
            "results": dg.MetadataValue.json(self.results),
        }


def _run_suite(name: str, frames: dict[str, pd.DataFrame], expectations: dict[str, list[Any]]) -> SuiteOutcome:
    """Validate each named DataFrame with its expectations in an ephemeral GX context.

    A failed row-level expectation names its first offending rows by their ids (ID_COLUMNS) and values."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name)
    results: list[dict[str, Any]] = []
    for frame_name, frame in frames.items():
        batch_def = source.add_dataframe_asset(frame_name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}.{frame_name}"))
        for expectation in expectations[frame_name]:
            suite.add_expectation(expectation)
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        id_columns = [c for c in ID_COLUMNS.get(frame_name, []) if c in frame.columns]
        result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": id_columns} if id_columns else "SUMMARY"
        validation = batch.validate(suite, result_format=result_format)
        for r in validation.results:
            config = r.expectation_config
            outcome = {
                "frame": frame_name,
                "expectation": config.type,
                "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
                "success": bool(r.success),
                "observed": _jsonable(r.result.get("observed_value", r.result.get("unexpected_count"))),
            }
            offending = r.result.get("unexpected_index_list") or []
            if not r.success and offending:
                outcome["offending_rows"] = [
                    {k: (_jsonable(v)[:80] + "..." if isinstance(v, str) and len(v) > 80 else _jsonable(v)) for k, v in row.items()}
                    for row in offending[:OFFENDING_ROWS]
                ]
            results.append(outcome)
    return SuiteOutcome(success=all(r["success"] for r in results), results=results)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def task_counts(tasks: pd.DataFrame) -> pd.DataFrame:
    """Tasks per (split, question_type), including combinations with zero tasks."""
    grid = pd.MultiIndex.from_product(
        [["train", "val", "test"], list(MIN_TASKS_PER_SPLIT)], names=["split", "question_type"]
    )
    counts = tasks.groupby(["split", "question_type"]).size().reindex(grid, fill_value=0).rename("n").reset_index()
    counts["min_n"] = counts["question_type"].map(MIN_TASKS_PER_SPLIT)
    counts["enough"] = counts["n"] >= counts["min_n"]
    return counts


def validate_tasks(tasks: pd.DataFrame) -> SuiteOutcome:
    import great_expectations as gx

    e = gx.expectations
    counts = task_counts(tasks)
    expectations = {
        "tasks": [
            e.ExpectColumnValuesToNotBeNull(column="question"),
            e.ExpectColumnValueLengthsToBeBetween(column="question", min_value=QUESTION_LENGTH[0], max_value=QUESTION_LENGTH[1]),
            e.ExpectColumnValuesToBeUnique(column="task_id"),
            e.ExpectColumnValuesToNotBeNull(column="gold_value"),
            e.ExpectColumnValuesToBeBetween(column="gold_value", min_value=-MAX_ABS_GOLD_VALUE, max_value=MAX_ABS_GOLD_VALUE),
            # answer distribution sane: answers are not all the same, not mostly zero
            e.ExpectColumnProportionOfUniqueValuesToBeBetween(column="gold_value", min_value=0.3),
            e.ExpectColumnValuesToNotBeInSet(column="gold_value", value_set=[0.0], mostly=0.9),
            e.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"]),
            e.ExpectColumnValuesToBeInSet(column="question_type", value_set=list(MIN_TASKS_PER_SPLIT)),
            e.ExpectColumnValuesToBeInSet(column="gold_unit", value_set=["number", "percent", "ratio"]),
        ],
        "counts_per_split_and_type": [
            e.ExpectColumnValuesToBeInSet(column="enough", value_set=[True]),
        ],
    }
    return _run_suite("tasks", {"tasks": tasks, "counts_per_split_and_type": counts}, expectations)


def numeric_cells(world_cells: pd.DataFrame) -> pd.DataFrame:
    """Value cells (not the row label) whose text contains a digit, with a flag saying whether they parsed."""
    cells = world_cells[(world_cells["column_index"] > 0) & world_cells["cell_text"].fillna("").str.contains(r"\d")]
    return pd.DataFrame({"source": cells["source"], "parsed": cells["value"].notna().astype(int)})


def validate_world_cells(world_cells: pd.DataFrame) -> SuiteOutcome:
    import great_expectations as gx

    e = gx.expectations
    numeric = numeric_cells(world_cells)
    frames = {"world_cells": world_cells, "numeric_cells": numeric}
    expectations = {
        "world_cells": [
            e.ExpectColumnValuesToNotBeNull(column="world_id"),
            e.ExpectColumnValuesToNotBeNull(column="table_name"),
            e.ExpectColumnValuesToNotBeNull(column="column_name"),
            e.ExpectColumnValuesToBeInSet(column="source", value_set=["sec10k", "finqa", "tatqa"]),
            e.ExpectColumnValuesToBeBetween(column="value", min_value=-MAX_ABS_GOLD_VALUE, max_value=MAX_ABS_GOLD_VALUE),
            e.ExpectColumnValuesToBeInSet(
                column="value_kind", value_set=["currency", "percent", "years", "multiple", "number"]
            ),
        ],
        "numeric_cells": [
            e.ExpectColumnMeanToBeBetween(column="parsed", min_value=MIN_NUMERIC_PARSE_COVERAGE, max_value=1.0),
        ],
    }
    # parse coverage must hold for every source, not just overall
    for source in sorted(numeric["source"].unique()):
        frames[f"numeric_cells_{source}"] = numeric[numeric["source"] == source]
        expectations[f"numeric_cells_{source}"] = [
            e.ExpectColumnMeanToBeBetween(column="parsed", min_value=MIN_NUMERIC_PARSE_COVERAGE, max_value=1.0)
        ]
    return _run_suite("world_cells", frames, expectations)


def read_table(warehouse_path: str, relation: str) -> pd.DataFrame:
    with connect_warehouse(warehouse_path, read_only=True, purpose=f"reading {relation}") as con:
        return con.sql(f"select * from {relation}").df()


def _check_result(outcome: SuiteOutcome, rows: int, extra: dict[str, Any] | None = None) -> dg.AssetCheckResult:
    metadata = {"rows": rows, **outcome.metadata(), **(extra or {})}
    description = None
    if not outcome.success:
        metadata["failed_expectations"] = dg.MetadataValue.json(outcome.failed())
        description = "; ".join(
            f"{r['frame']}: {r['expectation']}({r['kwargs'].get('column', '')})"
            + (f" on {r['offending_rows'][0]}" + (f" and {len(r['offending_rows']) - 1} more" if len(r["offending_rows"]) > 1 else "")
               if r.get("offending_rows") else f", observed {r['observed']}")
            for r in outcome.failed()
        )
    return dg.AssetCheckResult(passed=outcome.success, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                               description=description)


@dg.asset_check(asset=dg.AssetKey(["marts", "tasks"]), name="gx_tasks_suite", blocking=True,
                description="Great Expectations suite on tasks: questions, answers, split x type minimum counts.")
def gx_tasks_suite(warehouse: Warehouse) -> dg.AssetCheckResult:
    tasks = read_table(warehouse.path, "marts.tasks")
    counts = {f"tasks/{r.split}/{r.question_type}": int(r.n) for r in task_counts(tasks).itertuples()}
    return _check_result(validate_tasks(tasks), len(tasks), counts)


@dg.asset_check(asset=dg.AssetKey(["marts", "world_cells"]), name="gx_world_cells_suite", blocking=True,
                description="Great Expectations suite on world_cells: identifiers, value ranges, numeric parse coverage.")
def gx_world_cells_suite(warehouse: Warehouse) -> dg.AssetCheckResult:
    cells = read_table(warehouse.path, "marts.world_cells")
    return _check_result(validate_world_cells(cells), len(cells))


def tasks_per_source(warehouse_path: str) -> tuple[bool, dict[str, dict[str, int]]]:
    """Every source that loaded records yields at least one task: (passed, {source: {records, tasks}})."""
    with connect_warehouse(warehouse_path, read_only=True, purpose="counting tasks per source") as con:
        records = dict(con.execute(
            "select 'sec10k', count(*) from raw.sec10k_tables union all select 'finqa', count(*) from raw.finqa_questions "
            "union all select 'tatqa', count(*) from raw.tatqa_questions").fetchall())
        tasks = dict(con.execute("select source, count(*) from marts.tasks group by all").fetchall())
    counts = {s: {"records": int(records.get(s, 0)), "tasks": int(tasks.get(s, 0))} for s in SOURCES}
    return all(c["tasks"] > 0 for c in counts.values() if c["records"] > 0), counts


@dg.asset_check(asset=dg.AssetKey(["marts", "tasks"]), name="tasks_per_source", blocking=True,
                description="Every raw source that loaded records yields at least one task (a source that loses all "
                            "its tasks fails the run, naming the source).")
def tasks_per_source_check(warehouse: Warehouse) -> dg.AssetCheckResult:
    passed, counts = tasks_per_source(warehouse.path)
    lost = sorted(s for s, c in counts.items() if c["records"] > 0 and c["tasks"] == 0)
    description = None if passed else "source(s) " + ", ".join(
        f"{s} ({counts[s]['records']} records, 0 tasks)" for s in lost) + " yield no task"
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=description,
        metadata={**{f"{s}/{k}": v for s, c in counts.items() for k, v in c.items()}, "failure": description or ""},
    )


validation_checks = [gx_tasks_suite, gx_world_cells_suite, tasks_per_source_check]
