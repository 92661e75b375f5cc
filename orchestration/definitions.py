"""The finqa-rl Dagster code location.

    dagster dev -m orchestration.definitions      # UI at http://localhost:3000

Assets: raw_files/* (observed) -> raw/{sec10k,finqa,tatqa} -> dbt models (staging, intermediate, marts) ->
environment snapshot -> policy (training: SFT + GRPO) -> evaluation (policy x task set partitions).
Checks: every dbt test, Great Expectations suites on tasks and world_cells, oracle pass rate on the snapshot
and on every test set through the evaluation code.
Automation (running by default): raw-file sensor, declarative automation raw -> dbt -> snapshot ->
evaluation (never training), nightly evaluation schedule.
Resources: the warehouse, data paths, dbt, evaluation settings, and the training launchers
(local_launcher: a subprocess here; skypilot_launcher: rented GPUs).
"""

from __future__ import annotations

import dagster as dg

from orchestration.defs.automation import automation_sensor, raw_files_sensor, with_automation
from orchestration.defs.dbt import dbt_resource, finqa_dbt_models
from orchestration.defs.evaluation import EvaluationDefs, default_evaluation_settings, evaluation_defs
from orchestration.defs.raw import raw_assets, raw_file_sources
from orchestration.defs.resources import default_resources
from orchestration.defs.snapshot import snapshot_assets
from orchestration.defs.training import training_assets
from orchestration.defs.validation import validation_checks
from orchestration.launchers.local import LocalLauncher
from orchestration.launchers.skypilot import SkyPilotLauncher

# The main job: every materialisable asset but the partitioned evaluation assets, the observed raw files,
# all checks, on local defaults (the raw files are observed first). orchestration.main runs only the part
# of it whose inputs or code changed, then the evaluation assets one partition per run.
main_job = dg.define_asset_job(
    "main",
    selection=(dg.AssetSelection.all() | dg.AssetSelection.keys(*(s.key for s in raw_file_sources))
               | dg.AssetSelection.all_asset_checks()) - dg.AssetSelection.groups("evaluation"),
)


def build_definitions(
    resources: dict[str, object] | None = None, evaluation: EvaluationDefs | None = None
) -> dg.Definitions:
    """Definitions with the given resources (defaults: paths from orchestration.paths / env vars) and
    evaluation partitions (default: every policy of POLICIES on every task set)."""
    evaluation = evaluation or evaluation_defs
    return dg.Definitions(
        assets=with_automation([*raw_file_sources, *raw_assets, finqa_dbt_models, *snapshot_assets,
                                *training_assets, *evaluation.assets]),
        asset_checks=validation_checks,  # the oracle check is declared on the snapshot asset itself
        jobs=[main_job, *evaluation.jobs],
        schedules=evaluation.schedules,
        sensors=[raw_files_sensor, automation_sensor()],
        resources={
            "dbt": dbt_resource(),
            **default_resources(),
            "evaluation": default_evaluation_settings(),
            "local_launcher": LocalLauncher(),
            "skypilot_launcher": SkyPilotLauncher(),  # bucket from $FINQA_RL_BUCKET; see docs/operations.md
            **(resources or {}),
        },
    )


defs = build_definitions()
