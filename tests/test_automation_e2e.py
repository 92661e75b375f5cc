"""End to end: a raw file removed from a copy of the raw folder is noticed by the raw-file sensor (which
observes the changed source), and declarative automation then re-materialises raw -> dbt -> snapshot ->
evaluation by itself (every tick
evaluated with `dg.evaluate_automation_conditions`, every requested run executed in-process). The new
episode rows carry the new snapshot hash, the old rows stay queryable, a task set whose tasks did not
change is not re-evaluated, and training is never requested.

The starting point is a deployment that has already run the main job: the session's `pipeline` run,
replayed into a fresh instance, with copies of its warehouse and raw folder (its snapshot is reused).
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict

import dagster as dg
import pytest

from orchestration.defs.automation import raw_files_sensor
from orchestration.defs.evaluation import EvaluationSettings, build_evaluation_defs
from orchestration.defs.training import register_evaluation_policies
from orchestration.defs.resources import DataPaths, Warehouse
from orchestration.paths import raw_root
from rl_assets.evaluation.store import EvaluationStore

SYNTH, REAL = "single_table-synth-test", "single_table-real-test"
MAX_TICKS = 8


def replay(source: dg.DagsterInstance) -> dg.DagsterInstance:
    """A fresh ephemeral instance holding the source instance's runs and events."""
    target = dg.DagsterInstance.ephemeral()
    for run in reversed(source.get_runs()):
        if run.job_snapshot_id:
            target.add_snapshot(source.get_job_snapshot(run.job_snapshot_id))
        if run.execution_plan_snapshot_id:
            target.add_snapshot(source.get_execution_plan_snapshot(run.execution_plan_snapshot_id))
        target.add_run(run)
        for event in source.all_logs(run.run_id):
            target.store_event(event)
    return target


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, keys, partition=None, tags=None) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(instance=instance, asset_selection=list(keys), partition_key=partition,
                                 tags=tags, raise_on_error=False)
    assert run.success, f"run of {sorted(k.to_user_string() for k in keys)} [{partition}] failed"


def automation_ticks(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None):
    """Evaluate automation and run what it requests until it requests nothing; returns what each tick requested."""
    ticks = []
    for _ in range(MAX_TICKS):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        by_partition = defaultdict(list)
        requested = {}
        for key in defs.resolve_asset_graph().get_all_asset_keys():
            partitions = result.get_requested_partitions(key)
            if partitions:
                requested[key.to_user_string()] = set(partitions)
            for partition in partitions:
                by_partition[partition].append(key)
        if not requested:
            return ticks, cursor
        ticks.append(requested)
        for partition, keys in by_partition.items():
            execute(defs, instance, keys, partition)
    raise AssertionError(f"automation still requesting after {MAX_TICKS} ticks: {ticks[-1]}")


def new_snapshot_path(instance: dg.DagsterInstance):
    from pathlib import Path

    event = instance.get_latest_materialization_event(dg.AssetKey("environment_snapshot"))
    return Path(event.asset_materialization.metadata["path"].value)


def test_a_raw_file_change_re_evaluates_by_itself_with_the_new_snapshot_hash(pipeline, snapshot_dir, tmp_path,
                                                                              monkeypatch):
    from orchestration.definitions import build_definitions

    monkeypatch.setenv("FINQA_RL_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))  # restored after the test
    raw = tmp_path / "raw"
    shutil.copytree(raw_root(), raw)
    shutil.copy(pipeline.warehouse, tmp_path / "warehouse.duckdb")
    store = EvaluationStore(tmp_path / "evaluations.duckdb")
    defs = build_definitions(
        {"warehouse": Warehouse(path=str(tmp_path / "warehouse.duckdb")),
         "data_paths": DataPaths(raw_root=str(raw), snapshots_root=str(tmp_path / "snapshots")),
         "evaluation": EvaluationSettings(store_path=str(store.path), reports_root=str(tmp_path / "reports"),
                                          models_root=str(tmp_path / "models"), sample_size=6)},
        evaluation=build_evaluation_defs(task_sets=(SYNTH, REAL)),
    )
    instance = replay(pipeline.instance)
    register_evaluation_policies(instance, ["oracle"])  # the evaluation policy partitions are instance state
    sensor_resources = {"data_paths": DataPaths(raw_root=str(raw), snapshots_root=str(tmp_path / "snapshots"))}

    def sensor_tick():
        return raw_files_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources))

    # nothing changed since the main job: the sensor skips; automation evaluates the oracle
    assert isinstance(sensor_tick(), dg.SkipReason)
    ticks, cursor = automation_ticks(defs, instance)
    assert ticks[0] == {"evaluation/task_sets": {SYNTH, REAL}, "evaluation/policies": {"oracle"}}
    old_hash = json.loads((snapshot_dir / "manifest.json").read_text())["snapshot_hash"]
    old_rows = store.query("SELECT task_set, snapshot_hash, count(*) AS n FROM episodes GROUP BY ALL ORDER BY 1")
    assert old_rows == [{"task_set": REAL, "snapshot_hash": old_hash, "n": 6},
                        {"task_set": SYNTH, "snapshot_hash": old_hash, "n": 6}]

    # the 10-K table a synthesised test task is asked about is removed from the raw folder
    from rl_assets.evaluation.task_sets import load_task_set

    task = load_task_set(snapshot_dir, SYNTH)[0]
    removed = raw / "sec10k_tables" / task["world_id"] / (json.loads(task["gold_tables"])[0] + ".json")
    removed.unlink()
    request = sensor_tick()
    assert request.asset_selection == [dg.AssetKey(["raw_files", "sec10k"])]  # observe the changed source
    execute(defs, instance, request.asset_selection, tags=request.tags)
    assert isinstance(sensor_tick(), dg.SkipReason)  # observed: nothing new

    ticks, _ = automation_ticks(defs, instance, cursor)
    requested = set().union(*(t.keys() for t in ticks))
    assert "policy" not in requested and not {"raw/finqa", "raw/tatqa"} & requested
    assert {"raw/sec10k", "environment_snapshot", "marts/tasks", "staging/stg_sec10k__cells"} <= requested
    assert "staging/stg_finqa__questions" not in requested  # only what depends on the changed source
    episodes_requested = set().union(*(t.get("evaluation/episodes", set()) for t in ticks))
    assert episodes_requested == {dg.MultiPartitionKey({"policy": "oracle", "task_set": SYNTH})}

    gx = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["marts", "tasks"]), "gx_tasks_suite"), limit=5)
    assert len(gx) == 2  # the blocking suite ran again, in the automated run, before the snapshot
    new_hash = instance.get_latest_materialization_event(dg.AssetKey("environment_snapshot")).asset_materialization \
        .metadata["snapshot_hash"].value
    assert new_hash != old_hash
    rows = store.query("SELECT task_set, snapshot_hash, version, count(*) AS n FROM episodes GROUP BY ALL ORDER BY 1, 3")
    assert rows == [
        {"task_set": REAL, "snapshot_hash": old_hash, "version": 1, "n": 6},  # its tasks did not change: not re-run
        {"task_set": SYNTH, "snapshot_hash": old_hash, "version": 1, "n": 6},  # old rows are still there
        {"task_set": SYNTH, "snapshot_hash": new_hash, "version": 2, "n": 6},
    ]
    assert task["task_id"] not in {t["task_id"] for t in load_task_set(new_snapshot_path(instance), SYNTH)}
    report = (tmp_path / "reports" / f"{new_hash}-oracle" / "report.md").read_text()
    assert old_hash in report and new_hash in report  # REAL's numbers ran on the old snapshot and say so
