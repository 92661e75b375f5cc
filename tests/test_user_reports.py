"""A user adds reports by dropping files in the same format into the raw folder and re-running the main
command: only what changed runs, existing companies and documents keep their split, a source that loses
everything fails the run naming it. Small copies of the real sources in a tmp raw folder, one Dagster
instance across the runs (as the main command's .dagster_home)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration import incremental
from orchestration.definitions import dbt_resource, main_job
from orchestration.defs.dbt import finqa_dbt_models
from orchestration.defs.raw import raw_assets, raw_file_sources
from orchestration.defs.resources import DataPaths, Warehouse
from orchestration.defs.validation import tasks_per_source_check
from orchestration.paths import REPO_ROOT

RAW = REPO_ROOT / "data" / "raw"
FINQA_LINES = (RAW / "finqa" / "finqa_examples.jsonl").read_text().splitlines()
TATQA_DOCS = json.loads((RAW / "tatqa" / "tatqa_dataset_dev.json").read_text())


def _definitions(raw_root: Path, warehouse: Path) -> dg.Definitions:
    return dg.Definitions(
        assets=[*raw_file_sources, *raw_assets, finqa_dbt_models],
        asset_checks=[tasks_per_source_check],
        jobs=[main_job],
        resources={
            "dbt": dbt_resource(),
            "warehouse": Warehouse(path=str(warehouse)),
            "data_paths": DataPaths(raw_root=str(raw_root), snapshots_root=str(raw_root.parent / "snapshots")),
        },
    )


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, warehouse: Path):
    """What the main command does: observe the raw files, plan, run what is out of date."""
    saved = os.environ.get("FINQA_RL_WAREHOUSE")
    try:
        assert incremental.observe_sources(defs, instance).success
        plan = incremental.plan(defs, instance, warehouse)
        return plan, (None if plan.up_to_date else incremental.execute(defs, instance, plan))
    finally:
        if saved is None:
            os.environ.pop("FINQA_RL_WAREHOUSE", None)
        else:
            os.environ["FINQA_RL_WAREHOUSE"] = saved


def _splits(warehouse: Path) -> dict[str, dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            "tasks": dict(con.execute("select task_id, split from marts.tasks").fetchall()),
            "companies": {(s, c): split for s, c, split in con.execute(
                "select source, company, split from intermediate.int_company_splits").fetchall()},
        }


@dataclass
class Growth:
    raw_root: Path
    warehouse: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    runs: list = field(default_factory=list)  # (plan, result) per run
    splits: list = field(default_factory=list)  # splits after each run that materialised


@pytest.fixture(scope="module")
def growth(tmp_path_factory) -> Growth:
    root = tmp_path_factory.mktemp("growth")
    raw_root, warehouse = root / "raw", root / "warehouse.duckdb"
    for company in ("apple", "nvidia", "boeing"):
        shutil.copytree(RAW / "sec10k_tables" / company, raw_root / "sec10k_tables" / company)
    shutil.copy(RAW / "sec10k_tables" / "tables_cleaned_all_companies.json", raw_root / "sec10k_tables")
    (raw_root / "finqa").mkdir()
    (raw_root / "finqa" / "finqa_examples.jsonl").write_text("\n".join(FINQA_LINES[:60]) + "\n")
    (raw_root / "tatqa").mkdir()
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").write_text(json.dumps(TATQA_DOCS[:20]))

    growth = Growth(raw_root, warehouse, _definitions(raw_root, warehouse), dg.DagsterInstance.ephemeral())
    # 1: first run, 2: nothing changed
    for _ in range(2):
        growth.runs.append(_run(growth.defs, growth.instance, warehouse))
    growth.splits.append(_splits(warehouse))
    # 3: more FinQA and TAT-QA files, a new 10-K company (no seed row), another known company
    (raw_root / "finqa" / "more_finqa.jsonl").write_text("\n".join(FINQA_LINES[60:140]) + "\n")
    (raw_root / "tatqa" / "more_tatqa.json").write_text(json.dumps(TATQA_DOCS[20:45]))
    new_company = raw_root / "sec10k_tables" / "my_corp"
    new_company.mkdir()
    for table in sorted((RAW / "sec10k_tables" / "apple").glob("*.json"))[:8]:
        shutil.copy(table, new_company / table.name)
    shutil.copytree(RAW / "sec10k_tables" / "gs", raw_root / "sec10k_tables" / "gs")
    growth.runs.append(_run(growth.defs, growth.instance, warehouse))
    growth.splits.append(_splits(warehouse))
    return growth


def test_the_first_run_materialises_everything_and_an_unchanged_second_run_nothing(growth):
    (first_plan, first), (second_plan, second) = growth.runs[:2]
    assert first.success
    assert set(first_plan.selection) == set(first_plan.all_assets)
    assert {e.asset_key for e in first.get_asset_materialization_events()} == set(first_plan.all_assets)
    assert second_plan.up_to_date and second is None


def test_changed_sources_and_everything_downstream_rerun(growth):
    plan, result = growth.runs[2]
    assert result.success
    selected = {k.to_user_string() for k in plan.selection}
    assert {"raw/sec10k", "raw/finqa", "raw/tatqa", "marts/tasks", "intermediate/int_company_splits"} <= selected
    assert plan.reasons[dg.AssetKey(["raw", "finqa"])] == "has a new dependency data version raw_files/finqa"
    # only one source changes: only it and what depends on it run
    (growth.raw_root / "tatqa" / "more_tatqa.json").write_text(json.dumps(TATQA_DOCS[20:46]))
    try:
        assert incremental.observe_sources(growth.defs, growth.instance).success
        only_tatqa = incremental.plan(growth.defs, growth.instance, growth.warehouse)
    finally:
        (growth.raw_root / "tatqa" / "more_tatqa.json").write_text(json.dumps(TATQA_DOCS[20:45]))
        assert incremental.observe_sources(growth.defs, growth.instance).success
    selected = {k.to_user_string() for k in only_tatqa.selection}
    assert "raw/tatqa" in selected and "staging/stg_tatqa__cells" in selected and "marts/tasks" in selected
    assert not selected & {"raw/sec10k", "raw/finqa", "staging/stg_sec10k__cells", "staging/stg_finqa__cells"}
    assert incremental.plan(growth.defs, growth.instance, growth.warehouse).up_to_date  # back as it was


def test_adding_data_never_moves_an_existing_company_document_or_task_to_another_split(growth):
    before, after = growth.splits
    assert before["companies"] and before["tasks"]
    moved = {k: (split, after["companies"].get(k)) for k, split in before["companies"].items()
             if after["companies"].get(k) != split}
    assert moved == {}
    kept = {t: s for t, s in before["tasks"].items() if t in after["tasks"]}
    assert len(kept) > 0.9 * len(before["tasks"])
    assert {t: (s, after["tasks"][t]) for t, s in kept.items() if after["tasks"][t] != s} == {}
    new_companies = set(after["companies"]) - set(before["companies"])
    assert {("sec10k", "my_corp"), ("sec10k", "gs")} <= new_companies
    assert any(source == "tatqa" for source, _ in new_companies) and any(source == "finqa" for source, _ in new_companies)


def test_a_dropped_in_company_becomes_part_of_the_world_and_the_tasks(growth):
    with duckdb.connect(str(growth.warehouse), read_only=True) as con:
        worlds = {r[0] for r in con.execute("select distinct world_id from marts.world_tables where source = 'sec10k'").fetchall()}
        assert worlds == {"apple", "nvidia", "boeing", "gs", "my_corp"}
        my_tasks = con.execute("select question from marts.tasks where world_id = 'my_corp'").fetchall()
        assert my_tasks and all("My Corp" in q for (q,) in my_tasks)
        assert len(con.execute("select distinct split from marts.tasks where world_id = 'my_corp'").fetchall()) == 1


def test_a_source_that_loses_everything_fails_the_run_naming_it(growth, tmp_path):
    raw_root = tmp_path / "raw"
    shutil.copytree(growth.raw_root, raw_root)
    for path in (raw_root / "finqa").iterdir():  # every FinQA line now has a byte that is not UTF-8
        path.write_bytes(b"\n".join(b'{"\xff' + line[2:] for line in path.read_bytes().splitlines()))
    warehouse = tmp_path / "warehouse.duckdb"
    defs = _definitions(raw_root, warehouse)
    plan, result = _run(defs, dg.DagsterInstance.ephemeral(), warehouse)
    assert not result.success
    checks = {e.asset_check_evaluation_data.check_name + "@" + e.asset_check_evaluation_data.asset_key.to_user_string():
              e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    failed = checks["source_loaded@raw/finqa"]
    assert not failed.passed and "source finqa" in failed.description
    assert checks["source_loaded@raw/sec10k"].passed and checks["source_loaded@raw/tatqa"].passed
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialised == {"raw/sec10k", "raw/finqa", "raw/tatqa"}  # the blocking check stopped dbt
    with duckdb.connect(str(warehouse), read_only=True) as con:
        reasons = dict(con.execute("select reason, count(*) from raw.rejected_records where source = 'finqa' group by all").fetchall())
    assert reasons == {"bad_encoding": 140}
