"""The finqa-rl Dagster code location.

    dagster dev -m orchestration.definitions      # UI at http://localhost:3000

Assets: raw_files/* (observed) -> raw/{sec10k,finqa,tatqa} -> dbt models (staging, intermediate, marts) -> environment snapshot.
Checks: every dbt test, Great Expectations suites on tasks and world_cells, oracle pass rate on the snapshot.
Resources: the warehouse, data paths, dbt, and the training launchers (skypilot_launcher: rented GPUs).
"""

from __future__ import annotations

import warnings

import dagster as dg

from orchestration.defs.dbt import dbt_resource, finqa_dbt_models
from orchestration.defs.raw import raw_assets, raw_file_sources
from orchestration.defs.resources import default_resources
from orchestration.defs.snapshot import snapshot_assets
from orchestration.defs.validation import validation_checks
from orchestration.launchers.skypilot import SkyPilotLauncher

# The main job: the whole asset graph with all checks, on local defaults (the raw files are observed
# first). orchestration.main runs only the part of it whose inputs or code changed.
with warnings.catch_warnings():  # include_sources is marked beta in this Dagster version
    warnings.simplefilter("ignore", dg.BetaWarning)
    main_job = dg.define_asset_job(
        "main", selection=dg.AssetSelection.all(include_sources=True) | dg.AssetSelection.all_asset_checks()
    )


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """Definitions with the given resources (defaults: paths from orchestration.paths / env vars)."""
    return dg.Definitions(
        assets=[*raw_file_sources, *raw_assets, finqa_dbt_models, *snapshot_assets],
        asset_checks=validation_checks,  # the oracle check is declared on the snapshot asset itself
        jobs=[main_job],
        resources={
            "dbt": dbt_resource(),
            **default_resources(),
            "skypilot_launcher": SkyPilotLauncher(),  # bucket from $FINQA_RL_BUCKET; see docs/operations.md
            **(resources or {}),
        },
    )


defs = build_definitions()
