"""The whole asset graph materialised by the main job: raw -> dbt -> checks, lineage, curation targets."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from orchestration.paths import REPO_ROOT


def _check_evaluations(result):
    return [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def test_code_location_loads_through_the_dagster_cli():
    """What `dagster dev -m orchestration.definitions` loads, validated by Dagster's own CLI — as under
    `dagster dev` (DAGSTER_IS_DEV_CLI set: the dbt manifest is re-parsed) and without .venv/bin on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, DAGSTER_IS_DEV_CLI="1")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if os.path.abspath(p) != bin_dir)
    proc = subprocess.run(
        [os.path.join(bin_dir, "dagster"), "definitions", "validate", "-m", "orchestration.definitions"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_definitions_contain_the_whole_graph():
    from orchestration.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for expected in ["raw/sec10k", "raw/finqa", "raw/tatqa", "marts/world_tables", "marts/world_cells", "marts/tasks",
                     "marts/tasks_single_table", "marts/tasks_multi_table", "marts/task_exclusions"]:
        assert expected in keys
    check_names = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"gx_tasks_suite", "gx_world_cells_suite"} <= check_names
    assert any(name.startswith("unique_tasks_task_id") for name in check_names)  # dbt tests are checks
    assert defs.resolve_job_def("main") is not None


def test_main_job_succeeds_with_every_check_green(pipeline):
    assert pipeline.result.success
    evaluations = _check_evaluations(pipeline.result)
    names = {e.check_name for e in evaluations}
    assert {"gx_tasks_suite", "gx_world_cells_suite"} <= names
    assert len(evaluations) >= 50
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations
              if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    assert failed == []
    # the only warnings: raw records rejected as malformed (137 empty sec10k tables, 1 FinQA table + its questions)
    warned = {f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed}
    assert warned == {"raw/sec10k:no_rejected_records", "raw/finqa:no_rejected_records"}
    by_key = {e.asset_key.to_user_string(): e for e in evaluations if e.check_name == "no_rejected_records"}
    assert by_key["raw/sec10k"].metadata["rejected_by_reason"].value == {"empty_table": 137}
    assert by_key["raw/tatqa"].passed


def test_curation_targets(marts):
    single = marts.execute("select count(*) from marts.tasks_single_table").fetchone()[0]
    multi = marts.execute("select count(*) from marts.tasks_multi_table").fetchone()[0]
    real = marts.execute("select count(*) from marts.tasks_single_table where source in ('finqa', 'tatqa')").fetchone()[0]
    assert single >= 1500
    assert multi >= 300
    assert real >= 400
    families = {r[0] for r in marts.execute("select distinct analytic_type from marts.tasks where source = 'sec10k'").fetchall()}
    assert {"lookup", "abs_change", "pct_change", "ratio", "share_of_total", "cagr", "average"} <= families
    assert {"cross_table_ratio", "cross_table_difference", "cross_table_share"} <= families


def test_world_covers_every_non_empty_source_table(marts):
    rows = dict(marts.execute("select source, count(*) from marts.world_tables group by all").fetchall())
    raw = dict(marts.execute(
        "select 'sec10k', count(*) from raw.sec10k_tables union all select 'finqa', count(*) from raw.finqa_tables "
        "union all select 'tatqa', count(*) from raw.tatqa_tables").fetchall())
    assert rows == raw
    companies = marts.execute("select count(distinct world_id) from marts.world_tables where source = 'sec10k'").fetchone()[0]
    assert companies == 20


def test_splits_are_disjoint_by_company_and_real_questions_never_train(marts):
    leaks = marts.execute(
        "select split_group from marts.tasks group by all having count(distinct split) > 1").fetchall()
    assert leaks == []
    # across sources: a FinQA ticker of a 10-K company (AAPL -> apple) shares that company's split,
    # and its questions are excluded when that company trains
    cross = marts.execute(
        "select t.company, t.split, s.split from marts.tasks t join seeds.company_tickers k on k.ticker = t.company "
        "join intermediate.int_company_splits s on s.source = 'sec10k' and s.company = k.company "
        "where t.source = 'finqa'").fetchall()
    assert all(task_split == company_split for _, task_split, company_split in cross)
    in_train = marts.execute(
        "select count(*) from marts.task_exclusions where reason = 'company_in_train_split'").fetchone()[0]
    train_tickers = marts.execute(
        "select count(*) from intermediate.int_real_tasks r join intermediate.int_company_splits s "
        "on s.source = r.source and s.company = r.company where s.split = 'train' and r.base_status = 'ok'").fetchone()[0]
    assert in_train == train_tickers
    assert marts.execute("select count(*) from marts.tasks where source <> 'sec10k' and split = 'train'").fetchone()[0] == 0
    splits = {r[0] for r in marts.execute("select distinct split from marts.tasks").fetchall()}
    assert splits == {"train", "val", "test"}


def test_every_exclusion_has_a_reason_and_real_exclusions_are_explained(marts):
    reasons = dict(marts.execute(
        "select reason, count(*) from marts.task_exclusions where candidate_kind = 'real_question' group by all").fetchall())
    assert "span_answer" in reasons and "number_from_text" in reasons
    total_real = marts.execute(
        "select (select count(*) from staging.stg_finqa__questions) + (select count(*) from staging.stg_tatqa__questions)"
    ).fetchone()[0]
    kept = marts.execute("select count(*) from marts.tasks where source <> 'sec10k'").fetchone()[0]
    assert kept + sum(reasons.values()) == total_real  # every real question is a task or an exclusion


def test_downstream_materialisations_record_parent_data_versions(pipeline):
    """Lineage: a dbt model's materialisation carries the data version of each raw parent."""
    instance = pipeline.instance
    raw_event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "sec10k"]))
    raw_version = raw_event.asset_materialization.tags["dagster/data_version"]
    assert len(raw_version) == 64  # the sha256 content hash of data/raw/sec10k_tables

    model_event = instance.get_latest_materialization_event(dg.AssetKey(["staging", "stg_sec10k__cells"]))
    tags = model_event.asset_materialization.tags
    assert tags["dagster/input_data_version/raw/sec10k"] == raw_version
    assert tags.get("dagster/code_version")  # dbt models carry code versions (SQL checksum)

    tasks_tags = instance.get_latest_materialization_event(dg.AssetKey(["marts", "tasks"])).asset_materialization.tags
    assert "dagster/input_data_version/intermediate/int_company_splits" in tasks_tags
    assert tasks_tags.get("dagster/data_version")


def test_dbt_manifest_is_reparsed_when_the_project_changes(tmp_path):
    """Editing a model or YAML makes the manifest stale; loading the definitions re-parses it first, so
    the dbt assets never run against a manifest that misses a model or test (no stale KeyError)."""
    from orchestration.defs import dbt as dbt_defs

    dbt_defs.prepare_manifest()
    assert not dbt_defs._manifest_is_stale()
    model = REPO_ROOT / "dbt_project" / "models" / "marts" / "tasks_multi_table.sql"
    stat = model.stat()
    os.utime(model, (stat.st_atime, dbt_defs.dbt_project.manifest_path.stat().st_mtime + 0.5))
    try:
        assert dbt_defs._manifest_is_stale()
        dbt_defs.prepare_manifest()
        assert not dbt_defs._manifest_is_stale()
    finally:
        os.utime(model, (stat.st_atime, stat.st_mtime))
