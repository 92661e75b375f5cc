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

from orchestration.defs.automation import automation_sensors, raw_files_sensor, with_automation
from orchestration.defs.dbt import dbt_resource, finqa_dbt_models
from orchestration.defs.evaluation import EvaluationDefs, default_evaluation_settings, evaluation_defs
from orchestration.defs.raw import raw_assets, raw_file_sources
from orchestration.defs.resources import default_resources
from orchestration.defs.snapshot import snapshot_assets
from orchestration.defs.experiments import experiment_defs
from orchestration.defs.training import training_assets, training_jobs
from orchestration.defs.validation import validation_checks
from orchestration.launchers.local import LocalLauncher
from orchestration.launchers.skypilot import SkyPilotLauncher

# The main job: the data half — every unpartitioned asset up to the environment snapshot, the observed raw files,
# all their checks, on local defaults (the raw files are observed first). Training (`base_model`, `policy`: one
# partition per base model / arm), evaluation (policy x task set) and experiment comparisons run as their own
# partition runs: orchestration.main runs the part of this job whose inputs or code changed, then the default arm's
# base model and training, then the evaluation partitions.
main_job = dg.define_asset_job(
    "main",
    selection=(dg.AssetSelection.all() | dg.AssetSelection.keys(*(s.key for s in raw_file_sources))
               | dg.AssetSelection.all_asset_checks())
    - dg.AssetSelection.groups("evaluation", "training", "experiments"),
)


def build_definitions(
    resources: dict[str, object] | None = None, evaluation: EvaluationDefs | None = None
) -> dg.Definitions:
    """Definitions with the given resources (defaults: paths from orchestration.paths / env vars) and
    evaluation assets (default: every task set; the policies are dynamic partitions)."""
    evaluation = evaluation or evaluation_defs
    comparisons, experiment_jobs = experiment_defs()
    return dg.Definitions(
        assets=with_automation([*raw_file_sources, *raw_assets, finqa_dbt_models, *snapshot_assets,
                                *training_assets, *evaluation.assets, *comparisons]),
        asset_checks=validation_checks,  # the oracle check is declared on the snapshot asset itself
        jobs=[main_job, *training_jobs, *evaluation.jobs, *experiment_jobs],
        schedules=evaluation.schedules,
        sensors=[raw_files_sensor, *automation_sensors()],
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
