"""The snapshot asset (content hash, immutability, publication after the oracle check, lineage) and the oracle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rl_assets.env import FinQAEnv, default_snapshot
from rl_assets.oracle import SnapshotCheckFailed, check_and_publish, evaluate_oracle, snapshot_code_version, solve
from rl_assets.snapshot import (
    MANIFEST,
    STAGING,
    UnpublishedSnapshotError,
    is_published,
    latest_snapshot,
    read_manifest,
    read_tasks,
    snapshots_root,
    stage_snapshot,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW_KEYS = {"raw/sec10k", "raw/finqa", "raw/tatqa"}


def _raw_versions(instance) -> dict[str, str]:
    versions = {}
    for key in RAW_KEYS:
        event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
        versions[key] = event.asset_materialization.tags["dagster/data_version"]
    return versions


def test_snapshot_materialisation_records_derived_lineage_and_the_check(pipeline, snapshot_dir):
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("environment_snapshot"))
    tags = event.asset_materialization.tags
    assert tags["dagster/data_version"] == snapshot_dir.name
    manifest = read_manifest(snapshot_dir)
    assert manifest["snapshot_hash"] == snapshot_dir.name
    assert manifest["tables"]["tasks"]["rows"] == sum(c["tasks"] for c in manifest["task_counts"])
    # the versions of the marts this materialisation read: exactly what Dagster recorded as its inputs
    inputs = {k.removeprefix("dagster/input_data_version/"): v for k, v in tags.items()
              if k.startswith("dagster/input_data_version/")}
    assert manifest["upstream_data_versions"] == inputs and set(inputs) == {
        "marts/tasks", "marts/world_cells", "marts/world_tables"}
    # everything they were built from, down to the sources (raw files, dbt seeds), by provenance
    built_from = manifest["lineage_data_versions"]
    assert {k: built_from[k] for k in RAW_KEYS} == _raw_versions(pipeline.instance)
    assert set(inputs) <= set(built_from) and "staging/stg_sec10k__cells" in built_from
    sources = manifest["source_data_versions"]
    assert sources and all(built_from[k] == v for k, v in sources.items())
    assert all(k.startswith(("raw", "seeds/")) for k in sources), sources
    # code version derived from the code, the same the asset declares
    assert manifest["code_version"] == snapshot_code_version() == tags["dagster/code_version"]
    oracle = manifest["oracle"]
    assert oracle["passed"] is True and oracle["code_version"] == snapshot_code_version()
    assert oracle["solved"] + oracle["unsolved_count"] == manifest["tables"]["tasks"]["rows"]
    assert oracle["unsolved_count"] == len(oracle["unsolved"])
    assert all(s["pass_rate"] >= oracle["min_pass_rate"] for s in oracle["task_sets"].values())
    assert is_published(snapshot_dir) and manifest["published_at"]


@pytest.fixture(scope="module")
def small_warehouse(pipeline, tmp_path_factory) -> Path:
    """A copy of the warehouse cut to two companies (~240 tasks): quick to export and check."""
    copy = tmp_path_factory.mktemp("small") / "w.duckdb"
    shutil.copy(pipeline.warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        for mart in ("tasks", "world_tables", "world_cells"):
            con.execute(f"delete from marts.{mart} where world_id not in ('gm', 'fedex')")
    return copy


def test_staging_then_publication_is_idempotent_and_never_modifies_a_published_snapshot(small_warehouse, tmp_path):
    root = tmp_path / "snaps"
    staged = stage_snapshot(small_warehouse, root)
    assert not staged.published
    assert staged.path.parent == root / STAGING
    with pytest.raises(FileNotFoundError, match="no published snapshot"):
        latest_snapshot(root)  # staged is not visible
    published, report, record = check_and_publish(staged)
    assert published.path == root / staged.hash and published.published and published.created
    assert record["passed"] and read_manifest(published.path)["oracle"] == record
    assert report.task_sets == record["task_sets"]
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in published.path.iterdir()}

    again = stage_snapshot(small_warehouse, root)  # unchanged marts: the published one, untouched
    assert again.published and not again.created and again.path == published.path
    checked, _, _ = check_and_publish(again)
    assert checked.path == published.path
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in published.path.iterdir()} == before
    assert sorted(p.name for p in root.iterdir()) == [STAGING, staged.hash]
    assert list((root / STAGING).iterdir()) == []  # nothing left in staging
    assert latest_snapshot(root) == published.path


def test_rebuilding_from_unchanged_raw_data_gives_the_same_snapshot(pipeline, snapshot_dir, rebuilt):
    """The whole graph again (raw load, dbt build, export) into a new warehouse: the same hash.

    Guards against nondeterminism anywhere upstream, e.g. a parallel float aggregate adding in a
    different order (an unordered avg() changed 4 gold values in their last bits between two runs of
    the main command; such a race does not show on every run, so this test can miss it once).
    """
    assert rebuilt.result.success
    again = latest_snapshot(rebuilt.snapshots_root)
    assert again.name == snapshot_dir.name
    for name in ("world_tables.parquet", "world_cells.parquet", "tasks.parquet"):
        assert (again / name).read_bytes() == (snapshot_dir / name).read_bytes(), name


def test_source_versions_are_those_the_exported_marts_were_built_from(rebuilt, tmp_path):
    """Reloading a raw source without rebuilding the marts must not change the snapshot's lineage."""
    from orchestration.definitions import build_definitions
    from orchestration.defs.resources import DataPaths, Warehouse

    raw = tmp_path / "raw"
    shutil.copytree(REPO_ROOT / "data" / "raw", raw)
    one_table = sorted((raw / "sec10k_tables").rglob("*.json"))[0]
    one_table.write_text(json.dumps(json.loads(one_table.read_text()), indent=3))  # same data, new bytes
    built_from = _raw_versions(rebuilt.instance)
    defs = build_definitions({
        "warehouse": Warehouse(path=str(rebuilt.warehouse)),
        "data_paths": DataPaths(raw_root=str(raw), snapshots_root=str(rebuilt.snapshots_root)),
    })
    job = defs.resolve_implicit_global_asset_job_def()
    for key in (dg.AssetKey(["raw", "sec10k"]), dg.AssetKey("environment_snapshot")):
        assert job.execute_in_process(instance=rebuilt.instance, asset_selection=[key]).success
    assert _raw_versions(rebuilt.instance)["raw/sec10k"] != built_from["raw/sec10k"]  # the reload is the latest
    event = rebuilt.instance.get_latest_materialization_event(dg.AssetKey("environment_snapshot"))
    lineage = event.asset_materialization.metadata["lineage_data_versions"].value
    assert {k: lineage[k] for k in RAW_KEYS} == built_from


def test_changed_marts_give_a_new_snapshot(small_warehouse, tmp_path):
    copy = tmp_path / "w.duckdb"
    shutil.copy(small_warehouse, copy)
    before = stage_snapshot(copy, tmp_path / "snaps")
    with duckdb.connect(str(copy)) as con:
        con.execute("update marts.tasks set question = question || ' ' where task_id = (select min(task_id) from marts.tasks)")
    after = stage_snapshot(copy, tmp_path / "snaps")
    assert after.hash != before.hash
    assert (before.path / MANIFEST).exists()  # the earlier one is untouched


@pytest.fixture(scope="module")
def corrupted_warehouse(small_warehouse, tmp_path_factory) -> Path:
    """The small warehouse with a tenth of the tasks given a wrong gold value: the oracle solves ~90%,
    below the 98% a snapshot needs."""
    copy = tmp_path_factory.mktemp("corrupted") / "w.duckdb"
    shutil.copy(small_warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("update marts.tasks set gold_value = gold_value * 3 + 1 where hash(task_id) % 10 = 0")
    return copy


def test_a_snapshot_that_fails_its_oracle_check_is_never_published(snapshot_dir, corrupted_warehouse, tmp_path, monkeypatch):
    from orchestration.defs.resources import DataPaths, Warehouse
    from orchestration.defs.snapshot import MART_KEYS, environment_snapshot

    root = tmp_path / "snapshots"
    root.mkdir()
    shutil.copytree(snapshot_dir, root / snapshot_dir.name)  # a good published snapshot is already there
    instance = dg.DagsterInstance.ephemeral()
    for key in MART_KEYS:  # the marts exist (built elsewhere): the snapshot's inputs
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    result = dg.materialize(
        [environment_snapshot], instance=instance, raise_on_error=False,
        resources={"warehouse": Warehouse(path=str(corrupted_warehouse)),
                   "data_paths": DataPaths(raw_root=str(REPO_ROOT / "data" / "raw"), snapshots_root=str(root))},
    )
    assert not result.success  # the asset fails loudly
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "fails its oracle check" in failure.event_specific_data.error.message
    check = next(e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
    assert check.passed is False and check.metadata["single_table/pass_rate"].value < 0.98
    assert check.metadata["unsolved_count"].value >= 10
    assert not result.get_asset_materialization_events()
    # nothing published: only the good snapshot, staging empty, and it stays the default
    assert sorted(p.name for p in root.iterdir()) == [STAGING, snapshot_dir.name]
    assert list((root / STAGING).iterdir()) == []
    monkeypatch.setenv("FINQA_RL_SNAPSHOTS_DIR", str(root))
    assert default_snapshot() == root / snapshot_dir.name


def test_check_and_publish_raises_and_deletes_the_staged_copy(corrupted_warehouse, tmp_path):
    staged = stage_snapshot(corrupted_warehouse, tmp_path)
    with pytest.raises(SnapshotCheckFailed, match="not published") as failed:
        check_and_publish(staged)
    assert not failed.value.record["passed"] and failed.value.record["unsolved_count"] >= 10
    assert {u["reason"] for u in failed.value.record["unsolved"]} == {"wrong_answer"}
    assert not staged.path.exists() and not (tmp_path / staged.hash).exists()


def test_unpublished_snapshots_are_refused(pipeline, snapshot_dir, corrupted_warehouse, tmp_path, monkeypatch):
    staged = stage_snapshot(corrupted_warehouse, tmp_path / "snaps")
    for refuse in (lambda p: read_tasks(p), lambda p: FinQAEnv(snapshot=p)):
        with pytest.raises(UnpublishedSnapshotError, match="waits for its oracle check"):
            refuse(staged.path)
    # a copy of a published snapshot whose manifest lost its check result
    unchecked = tmp_path / "unchecked" / snapshot_dir.name
    shutil.copytree(snapshot_dir, unchecked)
    manifest = read_manifest(unchecked)
    del manifest["oracle"]
    (unchecked / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UnpublishedSnapshotError, match="never published"):
        read_tasks(unchecked)
    with pytest.raises(UnpublishedSnapshotError, match="never published"):
        FinQAEnv(snapshot=unchecked)
    monkeypatch.setenv("FINQA_RL_SNAPSHOTS_DIR", str(tmp_path / "unchecked"))
    with pytest.raises(FileNotFoundError, match="no published snapshot"):
        default_snapshot()


def test_default_snapshot_does_not_depend_on_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("FINQA_RL_SNAPSHOTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert snapshots_root() == REPO_ROOT / "data" / "snapshots"
    monkeypatch.setenv("FINQA_RL_SNAPSHOTS_DIR", "elsewhere")
    assert snapshots_root() == tmp_path / "elsewhere"  # an explicit relative setting is the user's


def test_default_snapshot_is_the_newest_published(snapshot_dir, tmp_path, monkeypatch):
    root = tmp_path / "snaps"
    older = root / snapshot_dir.name
    shutil.copytree(snapshot_dir, older)
    newer = root / "0000000000000000"  # another published snapshot, published later
    shutil.copytree(snapshot_dir, newer)
    manifest = read_manifest(newer)
    manifest.update(snapshot_hash=newer.name, published_at="2999-01-01T00:00:00+00:00")
    (newer / MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv("FINQA_RL_SNAPSHOTS_DIR", str(root))
    assert default_snapshot() == newer
    manifest["oracle"]["passed"] = False  # newest directory, but not published: skipped
    (newer / MANIFEST).write_text(json.dumps(manifest))
    assert default_snapshot() == older


def test_the_snapshot_code_version_changes_with_the_code_it_depends_on(tmp_path):
    """Hash a copy of the package: equal when unchanged, different when the oracle or a module it imports
    (grading, through env) changes, unchanged when an unrelated module changes."""
    def version_of(copy_root: Path) -> str:
        out = subprocess.run(
            [sys.executable, "-c", "import rl_assets.oracle as o; print(o.__file__); print(o.snapshot_code_version())"],
            cwd=copy_root, env={**os.environ, "PYTHONPATH": str(copy_root)}, capture_output=True, text=True, check=True,
        ).stdout.split()
        assert out[0].startswith(str(copy_root))  # the copy, not the installed checkout
        return out[1]

    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "rl_assets", copy / "rl_assets", ignore=shutil.ignore_patterns("__pycache__"))
    assert version_of(copy) == snapshot_code_version()
    (copy / "rl_assets" / "cli.py").write_text((copy / "rl_assets" / "cli.py").read_text() + "\n# unrelated\n")
    assert version_of(copy) == snapshot_code_version()
    grading = copy / "rl_assets" / "grading.py"
    grading.write_text(grading.read_text().replace("rel_tol: float = 0.01", "rel_tol: float = 0.02", 1))
    changed = version_of(copy)
    assert changed != snapshot_code_version()
    oracle = copy / "rl_assets" / "oracle.py"
    oracle.write_text(oracle.read_text() + "\n# a change\n")
    assert version_of(copy) not in (changed, snapshot_code_version())


def test_oracle_check_passed_with_rates_in_metadata(pipeline):
    evaluations = [e.asset_check_evaluation_data for e in pipeline.result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.asset_check_evaluation_data.check_name == "oracle_pass_rate"]
    assert len(evaluations) == 1 and evaluations[0].passed
    metadata = evaluations[0].metadata
    assert metadata["single_table/pass_rate"].value >= 0.98
    assert metadata["multi_table/pass_rate"].value >= 0.98
    assert metadata["multi_table/tasks"].value >= 300


def test_oracle_reports_curation_bugs_with_reasons(snapshot_dir, tasks):
    env = FinQAEnv(snapshot=snapshot_dir)
    good = next(t for t in tasks if t["source"] == "sec10k" and t["analytic_type"] == "ratio")
    assert solve(env, good).correct

    wrong_gold = dict(good, gold_value=good["gold_value"] * 3 + 1)
    result = solve(env, wrong_gold)
    assert not result.correct and result.reason == "wrong_answer"

    ops = json.loads(good["gold_operands"])
    ops[0]["row_label"] = "no such row"
    result = solve(env, dict(good, gold_operands=json.dumps(ops)))
    assert not result.correct and result.reason == "operand_not_found"

    ops = json.loads(good["gold_operands"])
    ops[0]["table"] = "missing_table"
    result = solve(env, dict(good, gold_operands=json.dumps(ops)))
    assert not result.correct and result.reason == "table_info_failed"

    report = evaluate_oracle(snapshot_dir, [good, wrong_gold])
    assert report.task_sets["single_table"]["pass_rate"] == 0.5
    assert not report.passed(0.98)
    assert [f["reason"] for f in report.failures] == ["wrong_answer"]
    record = report.manifest_record(0.98, "v")
    assert (record["solved"], record["unsolved_count"]) == (1, 1)
    assert record["unsolved"] == [{"task_id": good["task_id"], "reason": "wrong_answer", "detail": report.failures[0]["detail"]}]


@pytest.mark.parametrize("source", ["sec10k", "finqa", "tatqa"])
def test_oracle_solves_each_program_kind_through_the_tools(snapshot_dir, tasks, source):
    env = FinQAEnv(snapshot=snapshot_dir)
    sample = [t for t in tasks if t["source"] == source][:25]
    results = [solve(env, t) for t in sample]
    assert all(r.correct for r in results), [r for r in results if not r.correct]
    # through the real tools: every episode queried and calculated
    solve(env, sample[0])
    used = {c.tool for c in env.tool_calls}
    assert {"get_descriptions", "get_table_info", "sql_query", "calculator", "submit_answer"} <= used
