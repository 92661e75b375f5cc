"""Evaluation assets under declarative automation (evaluated with `dg.evaluate_automation_conditions`, every
requested partition executed in-process): only partitions whose inputs changed re-run, training is never
requested, lineage reaches the Dagster materialisations, the oracle check, the report in the UI, the nightly
schedule and the sensors' default status."""

from __future__ import annotations

import datetime
import json
import shutil
from collections import defaultdict
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.defs import evaluation as ev
from orchestration.defs.automation import (AUTOMATION_INTERVAL_S, RAW_CHECK_INTERVAL_S, automation_sensor,
                                           raw_files_sensor, with_automation)
from rl_assets.evaluation.store import EvaluationStore

SYNTH, MULTI = "single_table-synth-test", "multi_table-synth-test"
ARM = "tiny-test"  # a tiny arm: its untrained counterpart is its own starting point, built in seconds
UNTRAINED = f"{ARM}-untrained"
POLICIES = ("oracle", UNTRAINED, ARM)


def evaluation_definitions(parts, settings) -> dg.Definitions:
    """The evaluation assets with the assets they depend on as plain specs (snapshot, training, base models)."""
    from orchestration.defs.training import ARMS, BASE_MODELS

    upstream = [dg.AssetSpec("environment_snapshot"), dg.AssetSpec("policy", partitions_def=ARMS, group_name="training"),
                dg.AssetSpec("base_model", partitions_def=BASE_MODELS, group_name="training")]
    return dg.Definitions(assets=[*upstream, *with_automation(parts.assets)], jobs=parts.jobs,
                          schedules=parts.schedules, resources={"evaluation": settings})


def execute_requested(defs: dg.Definitions, instance: dg.DagsterInstance, result) -> dict[str, set]:
    """Run what an automation tick requested, one in-process run per partition key (as the daemon would)."""
    by_partition: dict[str | None, list[dg.AssetKey]] = defaultdict(list)
    requested: dict[str, set] = {}
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        partitions = result.get_requested_partitions(key)
        if partitions:
            requested[key.to_user_string()] = set(partitions)
        for partition in partitions:
            by_partition[partition].append(key)
    job = defs.resolve_implicit_global_asset_job_def()
    for partition, keys in by_partition.items():
        run = job.execute_in_process(instance=instance, asset_selection=keys, partition_key=partition, raise_on_error=False)
        assert run.success, f"run for {partition} {keys} failed"
    return requested


def tick(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                               asset_selection=dg.AssetSelection.groups("evaluation"))
    return result, execute_requested(defs, instance, result)


def changed_snapshot(snapshot_dir: Path, root: Path, task_set_tasks: list[dict]) -> Path:
    """A copy of the snapshot where one task of one task set is asked differently (new snapshot hash)."""
    target = root / "changed0000000000"
    shutil.copytree(snapshot_dir, target)
    task_id = task_set_tasks[0]["task_id"]
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * REPLACE (CASE WHEN task_id = ? THEN question || ' (restated)' ELSE question END "
                    f"AS question) FROM read_parquet('{snapshot_dir / 'tasks.parquet'}') ORDER BY task_id) "
                    f"TO '{target / 'tasks.parquet'}' (FORMAT parquet)", [task_id])
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "snapshot_hash": target.name}))
    return target


def report_snapshot(instance: dg.DagsterInstance, path: Path) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="environment_snapshot", metadata={"path": dg.MetadataValue.path(str(path))},
        tags={"dagster/data_version": path.name}))


@pytest.fixture(scope="module")
def automated(snapshot_dir, tmp_path_factory):
    """Evaluation definitions (three policies x two task sets, 4 tasks each) on an ephemeral instance that
    knows the pipeline's snapshot; the tiny models play through the real local-model rollouts."""
    root = tmp_path_factory.mktemp("evaluation_assets")
    parts = ev.build_evaluation_defs(task_sets=(SYNTH, MULTI))
    settings = ev.EvaluationSettings(store_path=str(root / "evaluations.duckdb"), reports_root=str(root / "reports"),
                                     models_root=str(root / "models"), sample_size=4, max_turns=2, max_new_tokens=8)
    defs = evaluation_definitions(parts, settings)
    (root / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(root / "dagster_home"))  # persistent: schedules need one
    report_snapshot(instance, snapshot_dir)
    from orchestration.defs.training import register_arm

    register_arm(instance, ARM)  # as requesting the arm's training does (orchestration.arms)
    ev.register_evaluation_policies(instance, POLICIES)  # as a policy[tiny-test] materialisation would
    yield defs, instance, root, EvaluationStore(settings.store_path)
    instance.dispose()


def test_automation_evaluates_every_available_policy_and_only_what_changed_afterwards(automated, snapshot_dir, tiny_run):
    defs, instance, root, store = automated
    all_pairs = {dg.MultiPartitionKey({"policy": p, "task_set": t}) for p in POLICIES for t in (SYNTH, MULTI)}

    # first ticks: task sets and policies, then episodes + summaries (same run), then reports
    result, requested = tick(defs, instance, None)
    assert requested == {"evaluation/task_sets": {SYNTH, MULTI}, "evaluation/policies": set(POLICIES)}
    assert instance.get_materialized_partitions(ev.POLICIES_KEY) == {"oracle", UNTRAINED}  # no training yet
    result, requested = tick(defs, instance, result.cursor)
    trained = {k for k in all_pairs if k.keys_by_dimension["policy"] != ARM}
    assert requested == {"evaluation/episodes": trained, "evaluation/summaries": trained}
    result, requested = tick(defs, instance, result.cursor)
    assert requested == {"evaluation/report": {"oracle", UNTRAINED}}
    result, requested = tick(defs, instance, result.cursor)
    assert requested == {}
    snapshot_hash = json.loads((snapshot_dir / "manifest.json").read_text())["snapshot_hash"]
    assert {r["snapshot_hash"] for r in store.query("SELECT DISTINCT snapshot_hash FROM episodes")} == {snapshot_hash}

    # a new snapshot in which only one task of SYNTH changed: only SYNTH's partitions re-run
    from rl_assets.evaluation.task_sets import load_task_set

    new_snapshot = changed_snapshot(snapshot_dir, root / "snapshots", load_task_set(snapshot_dir, SYNTH))
    report_snapshot(instance, new_snapshot)
    result, requested = tick(defs, instance, result.cursor)
    assert requested["evaluation/task_sets"] == {SYNTH, MULTI} and "evaluation/episodes" not in requested
    result, requested = tick(defs, instance, result.cursor)
    rerun = {k for k in trained if k.keys_by_dimension["task_set"] == SYNTH}
    assert requested == {"evaluation/episodes": rerun, "evaluation/summaries": rerun}
    old = store.query("SELECT count(*) AS n FROM episodes WHERE snapshot_hash = ?", [snapshot_hash])[0]["n"]
    new = store.query("SELECT DISTINCT task_set FROM episodes WHERE snapshot_hash = ?", [new_snapshot.name])
    assert old == 16 and new == [{"task_set": SYNTH}]  # old rows stay; MULTI was not re-evaluated
    result, requested = tick(defs, instance, result.cursor)
    assert requested == {"evaluation/report": {"oracle", UNTRAINED}}

    # a trained arm appears: only its partitions run, and training itself is never requested
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="policy", partition=ARM, metadata={"path": dg.MetadataValue.path(str(tiny_run))}))
    result, requested = tick(defs, instance, result.cursor)
    assert requested == {"evaluation/policies": set(POLICIES)}
    result, requested = tick(defs, instance, result.cursor)
    local = {k for k in all_pairs if k.keys_by_dimension["policy"] == ARM}
    assert requested == {"evaluation/episodes": local, "evaluation/summaries": local}
    rows = store.query("SELECT DISTINCT policy_version, training_cost_usd FROM episodes WHERE policy = ?", [ARM])
    assert rows == [{"policy_version": store.query(
        "SELECT policy_version FROM episodes WHERE policy = ? LIMIT 1", [UNTRAINED])[0]["policy_version"],
        "training_cost_usd": 0.42}]  # same weights as the untrained model; cost from the run's lineage.json
    result, requested = tick(defs, instance, result.cursor)
    assert requested == {"evaluation/report": {ARM}}


@pytest.fixture(scope="module")
def tiny_run(automated, snapshot_dir):
    """A training run directory (model/, lineage.json with compute, metrics.jsonl) around the untrained model."""
    from rl_assets.policies.tiny import build_untrained_tiny_model

    _, _, root, _ = automated
    run = root / "runs" / "tiny-test-run"
    shutil.copytree(build_untrained_tiny_model(snapshot_dir, root / "models", ARM), run / "model")
    (run / "lineage.json").write_text(json.dumps({"config_name": ARM, "compute": {
        "accelerator": "H100", "gpu_minutes": 3.0, "estimated_usd": 0.42}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": s / 10, "loss": 1 - s / 10}) + "\n"
                                               for s in range(5)))
    return run


def test_materialisations_carry_lineage_the_oracle_check_and_the_report(automated, tiny_run):
    defs, instance, root, store = automated
    key = dg.MultiPartitionKey({"policy": "oracle", "task_set": SYNTH})
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ev.EPISODES_KEY, asset_partitions=[key]), limit=1).records[0]
    tags = record.asset_materialization.tags
    task_set_version = ev.latest_metadata(instance, ev.TASK_SETS_KEY, SYNTH)["task_set_version"]
    assert {"dagster/input_data_version/evaluation/task_sets", "dagster/input_data_version/evaluation/policies",
            "dagster/code_version"} <= set(tags)
    evaluation_id = record.asset_materialization.metadata["evaluation_id"].value
    assert {r["task_set_version"] for r in store.episodes(evaluation_id)} == {task_set_version}

    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(ev.SUMMARIES_KEY, "oracle_pass_rate"), limit=100)
    evaluations = [r.event.dagster_event.event_specific_data for r in history if r.event is not None]
    applied = [e for e in evaluations if e.metadata["applies"].value]
    assert len(evaluations) == len(history) >= 6 and all(e.passed for e in evaluations)
    assert applied and all(e.metadata["pass@1"].value >= 0.98 for e in applied)
    assert ev.latest_metadata(instance, ev.SUMMARIES_KEY, key)["pass@1"] == 1.0
    trained = ev.latest_metadata(instance, ev.SUMMARIES_KEY, dg.MultiPartitionKey({"policy": ARM, "task_set": SYNTH}))
    # evaluated after its untrained counterpart: the delta is in the summary (same weights, same greedy episodes: 0)
    assert trained["baseline"] == UNTRAINED and trained["delta_pass@1"] == 0.0

    report = ev.latest_metadata(instance, ev.REPORT_KEY, ARM)
    assert "data:image/png;base64," in report["report"] and "## Training run" in report["report"]
    folder = Path(report["path"]).parent
    assert {p.name for p in folder.iterdir()} == {"report.md", "pass_at_1.png", "failure_modes.png", "training_curve.png"}


def test_the_oracle_check_fails_below_98_percent_on_a_test_set(automated, monkeypatch):
    defs, instance, root, store = automated
    import rl_assets.oracle

    monkeypatch.setattr(rl_assets.oracle, "_calculate", lambda env, expression: "0")  # a broken oracle
    key = dg.MultiPartitionKey({"policy": "oracle", "task_set": SYNTH})
    run = defs.resolve_job_def("evaluation").execute_in_process(instance=instance, partition_key=key,
                                                               raise_on_error=False)
    (check,) = [e.asset_check_evaluation_data for e in run.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not check.passed and check.metadata["applies"].value is True and check.metadata["pass@1"].value < 0.98


def test_the_nightly_schedule_re_evaluates_every_available_policy(automated, tmp_path):
    defs, instance, _, _ = automated
    schedule = defs.get_schedule_def("nightly_evaluation")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.cron_schedule == ev.NIGHTLY_CRON
    night = datetime.datetime(2026, 1, 2, 2, 0, tzinfo=datetime.timezone.utc)
    repository = defs.get_repository_def()
    requests = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, scheduled_execution_time=night, repository_def=repository)).run_requests
    assert {r.partition_key for r in requests} == {
        dg.MultiPartitionKey({"policy": p, "task_set": t}) for p in POLICIES for t in (SYNTH, MULTI)}
    assert all(r.run_key.startswith("nightly/2026-01-02/") for r in requests)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as fresh:
        empty = schedule.evaluate_tick(dg.build_schedule_context(
            instance=fresh, scheduled_execution_time=night, repository_def=repository))
    assert not empty.run_requests and "no evaluated policy" in empty.skip_message


def test_sensors_run_by_default_and_automation_never_targets_training():
    @dg.asset(group_name="training")
    def policy():
        ...

    @dg.asset(group_name="environment", deps=[policy])
    def environment_snapshot():
        ...

    automated = with_automation([policy, environment_snapshot])
    assert automated[0].specs_by_key[dg.AssetKey("policy")].automation_condition is None
    assert automated[1].specs_by_key[dg.AssetKey("environment_snapshot")].automation_condition is not None
    sensor = automation_sensor()
    graph = dg.Definitions(assets=automated, sensors=[sensor]).resolve_asset_graph()
    assert sensor.asset_selection.resolve(graph) == {dg.AssetKey("environment_snapshot")}
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert raw_files_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert RAW_CHECK_INTERVAL_S <= 60 and AUTOMATION_INTERVAL_S <= 60  # a raw change is noticed within a minute


def test_the_project_definitions_load_with_automation_on_every_stage_but_training():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable and node.group_name != "training":
            assert node.automation_condition is not None, key
    assert graph.get(dg.AssetKey("policy")).automation_condition is None  # training costs money: never automatic
    assert {s.name for s in defs.sensors} >= {"raw_files_sensor", "finqa_automation"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
    main = defs.resolve_job_def("main")  # the data half: partitioned training and evaluation run on their own
    assert not any(k.path[0] in ("evaluation", "policy", "base_model", "experiments")
                   for k in main.asset_layer.executable_asset_keys)


def test_the_raw_file_sensor_notices_files_added_changed_and_removed(tmp_path):
    from orchestration.defs.raw import raw_file_sources
    from orchestration.defs.resources import DataPaths
    from orchestration.paths import raw_root

    raw = tmp_path / "raw"
    (raw / "sec10k_tables").mkdir(parents=True)
    for company in ("apple", "nvidia"):
        shutil.copytree(raw_root() / "sec10k_tables" / company, raw / "sec10k_tables" / company)
    shutil.copytree(raw_root() / "finqa", raw / "finqa")
    shutil.copytree(raw_root() / "tatqa", raw / "tatqa")
    paths = DataPaths(raw_root=str(raw), snapshots_root=str(tmp_path / "snapshots"))
    defs = dg.Definitions(assets=raw_file_sources, resources={"data_paths": paths})
    instance = dg.DagsterInstance.ephemeral()

    def tick():
        result = raw_files_sensor(dg.build_sensor_context(instance=instance, resources={"data_paths": paths}))
        if isinstance(result, dg.SkipReason):
            return None
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=result.asset_selection, tags=result.tags)
        assert run.success
        return {k.path[1] for k in result.asset_selection}, result.run_key

    assert tick()[0] == {"sec10k", "finqa", "tatqa"}  # never observed
    assert tick() is None
    added = raw / "finqa" / "more.jsonl"
    added.write_text((raw_root() / "finqa" / "finqa_examples.jsonl").read_text().splitlines()[0] + "\n")
    assert tick()[0] == {"finqa"}
    changed = next((raw / "tatqa").glob("*.json"))
    changed.write_text(changed.read_text().replace('"', '"', 1) + "\n")
    assert tick()[0] == {"tatqa"}
    removed = sorted((raw / "sec10k_tables" / "nvidia").glob("*.json"))[0]
    content = removed.read_bytes()
    removed.unlink()
    sources, first_key = tick()
    assert sources == {"sec10k"} and tick() is None
    removed.write_bytes(content)  # back to what was observed two observations ago: still a change, a new run key
    sources, second_key = tick()
    assert sources == {"sec10k"} and second_key != first_key


def test_the_main_commands_evaluation_skips_what_did_not_change(snapshot_dir, tmp_path, monkeypatch):
    """run_evaluations (the README main command's evaluation) evaluates a partition again only when its task
    set, policy artifact or evaluation code changed: a re-run on unchanged inputs adds no evaluation, and an
    unchanged partition whose last evaluation failed its check still counts as failed."""
    import rl_assets.oracle
    from rl_assets.evaluation.task_sets import load_task_set

    parts = ev.build_evaluation_defs(task_sets=(SYNTH,))
    settings = ev.EvaluationSettings(store_path=str(tmp_path / "evaluations.duckdb"), reports_root=str(tmp_path / "reports"),
                                     models_root=str(tmp_path / "models"), sample_size=4, max_turns=2, max_new_tokens=8)
    defs = evaluation_definitions(parts, settings)
    instance = dg.DagsterInstance.ephemeral()
    report_snapshot(instance, snapshot_dir)
    store = EvaluationStore(settings.store_path)
    unchanged = f"oracle on {SYNTH}: unchanged since its last evaluation (same task set, policy and code versions)"

    def evaluate(status: str) -> list[str]:
        lines = []
        outcomes = ev.run_evaluations(defs, instance, policies=("oracle",), task_sets=(SYNTH,), log=lines.append)
        assert [(o.policy, o.status) for o in outcomes] == [("oracle", status)]
        return lines

    def evaluations() -> int:
        return store.query("SELECT count(*) AS n FROM evaluations")[0]["n"]

    assert evaluate("reported") == [f"evaluating oracle on {SYNTH}"] and evaluations() == 1
    assert evaluate("reported") == [unchanged] and evaluations() == 1
    # one task of the set changed in a new snapshot: evaluated again, a new version in the store
    report_snapshot(instance, changed_snapshot(snapshot_dir, tmp_path / "snapshots", load_task_set(snapshot_dir, SYNTH)))
    assert evaluate("reported") == [f"evaluating oracle on {SYNTH}"] and evaluations() == 2
    # a broken oracle on yet another snapshot fails the check; unchanged, it stays failed without re-playing
    monkeypatch.setattr(rl_assets.oracle, "_calculate", lambda env, expression: "0")
    report_snapshot(instance, changed_snapshot(snapshot_dir, tmp_path / "snapshots-2", load_task_set(snapshot_dir, SYNTH)[1:]))
    assert evaluate("failed") == [f"evaluating oracle on {SYNTH}"] and evaluations() == 3
    assert evaluate("failed") == [unchanged + ", which failed"] and evaluations() == 3
