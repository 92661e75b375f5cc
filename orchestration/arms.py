"""Training arms from Python (the main command and `finqa-rl experiment`): materialise an arm's base model and its
`policy[arm]` partition when they are not current, and read what happened to an arm from the instance.

    outcome = train_arm(defs, instance, "smollm2-cpu", launcher="local")   # ArmOutcome: trained / failed / skipped
    arm_outcome(instance, "smollm2-cpu-mixed")                             # from the instance alone
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import dagster as dg

from orchestration.defs.training import BASE_MODEL_KEY, register_arm
from rl_assets.experiments.comparison import ArmOutcome

POLICY_KEY = dg.AssetKey("policy")


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of what a person needs to see: the training process's own exception where it reported one
    through Dagster Pipes (the step failure then only says the external process exited with code 1), else the
    first step failure of the run."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None and (event.message or "").startswith("[pipes]") and error.message.strip():
            return error.message.strip().splitlines()[0][:300]
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = record.dagster_event.event_specific_data.error
        while error is not None and error.cause is not None and "Error occurred while executing" in error.message:
            error = error.cause
        if error is not None:
            return (error.message.strip().splitlines() or [""])[0][:300]
    run = instance.get_run_by_id(run_id)
    return f"run {run_id} {run.status.value.lower() if run else 'not found'}"


def arm_outcome(instance: dg.DagsterInstance, arm: str) -> ArmOutcome:
    """`trained` (the newest policy[arm] materialisation and its run's lineage.json), `failed` (the newest attempt
    failed after it: the error's first line) or `not trained`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=POLICY_KEY, asset_partitions=[arm]), limit=1).records
    planned = instance.get_latest_planned_materialization_info(POLICY_KEY, arm)
    materialised_run = records[0].run_id if records else None
    if planned is not None and planned.run_id != materialised_run:
        run = instance.get_run_by_id(planned.run_id)
        if run is not None and run.is_finished and not run.is_success:
            return ArmOutcome(arm, "failed", _run_error(instance, planned.run_id))
    if not records:
        return ArmOutcome(arm, "not trained", f"policy[{arm}] was never materialised")
    metadata = records[0].asset_materialization.metadata
    run_dir = str(metadata["artifact_path"].value) if "artifact_path" in metadata else None
    lineage_file = Path(run_dir) / "lineage.json" if run_dir else None
    lineage = json.loads(lineage_file.read_text()) if lineage_file and lineage_file.is_file() else {}
    return ArmOutcome(arm, "trained", "", run_dir, lineage)


def train_arm(defs: dg.Definitions, instance: dg.DagsterInstance, arm_name: str, launcher: str = "local",
              run_config: dict | None = None, log: Callable[[str], None] = print) -> ArmOutcome:
    """Materialise the arm's base model (a registered one) and `policy[arm]` unless they are current."""
    from orchestration.incremental import partition_is_current
    from rl_assets.base_models import is_registered
    from rl_assets.experiments import resolve_arm

    arm = resolve_arm(arm_name)
    register_arm(instance, arm.name)
    extra = dict(run_config or {})
    base = arm.base
    if is_registered(base) and not partition_is_current(defs, instance, BASE_MODEL_KEY, base):
        log(f"base model {base}: fetching, converting and checking it")
        result = defs.resolve_job_def("base_models").execute_in_process(
            instance=instance, partition_key=base, raise_on_error=False, run_config=extra or None)
        if not result.success:
            return ArmOutcome(arm.name, "failed", f"base model {base}: {_run_error(instance, result.run_id)}")
    current = partition_is_current(defs, instance, POLICY_KEY, arm.name)
    outcome = arm_outcome(instance, arm.name)
    same_config = outcome.lineage.get("config_hash") == arm.train_config().hash  # the arm's definition may change
    if (current and same_config and outcome.status == "trained" and outcome.run_dir
            and Path(outcome.run_dir, "model").is_dir()):
        log(f"{arm.name}: trained earlier on the same snapshot with the same code (not trained again)")
        return outcome
    log(f"training {arm.name} (config {arm.config}{', ' + ', '.join(arm.overrides) if arm.overrides else ''}) "
        f"with the {launcher} launcher")
    config = {**extra, "ops": {"policy": {"config": {"launcher": launcher}}}}
    result = defs.resolve_job_def("train_arm").execute_in_process(
        instance=instance, partition_key=arm.name, raise_on_error=False, run_config=config)
    if not result.success:
        return ArmOutcome(arm.name, "failed", _run_error(instance, result.run_id))
    outcome = arm_outcome(instance, arm.name)
    outcome.trained_now = True
    return outcome
