"""Shared fixtures. The expensive one, `pipeline`, runs the whole main job once per test session
into a temporary warehouse and snapshot folder, on an ephemeral Dagster instance."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PipelineRun:
    result: object
    instance: object
    warehouse: Path
    snapshots_root: Path


def _run_main_job(root: Path) -> PipelineRun:
    """Run the whole main job into `root` (warehouse + snapshots) on an ephemeral instance."""
    import dagster as dg

    from orchestration import paths
    from orchestration.definitions import build_definitions  # re-parses the dbt project if it changed
    from orchestration.defs.resources import DataPaths, Warehouse

    warehouse = root / "warehouse.duckdb"
    snapshots_root = root / "snapshots"
    saved = os.environ.get("FINQA_RL_WAREHOUSE")
    try:
        defs = build_definitions(
            {
                "warehouse": Warehouse(path=str(warehouse)),
                "data_paths": DataPaths(raw_root=str(paths.raw_root()), snapshots_root=str(snapshots_root)),
            }
        )
        instance = dg.DagsterInstance.ephemeral()
        result = defs.resolve_job_def("main").execute_in_process(instance=instance, raise_on_error=False)
    finally:
        if saved is None:
            os.environ.pop("FINQA_RL_WAREHOUSE", None)
        else:
            os.environ["FINQA_RL_WAREHOUSE"] = saved
    return PipelineRun(result, instance, warehouse, snapshots_root)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> PipelineRun:
    return _run_main_job(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def run_main_job():
    """The job runner behind `pipeline`, for tests that need a second, independent run."""
    return _run_main_job


@pytest.fixture(scope="session")
def marts(pipeline):
    """Read-only connection to the pipeline's warehouse."""
    import duckdb

    con = duckdb.connect(str(pipeline.warehouse), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="session")
def snapshot_dir(pipeline) -> Path:
    """The environment snapshot the main job exported."""
    from rl_assets.snapshot import latest_snapshot

    return latest_snapshot(pipeline.snapshots_root)


@pytest.fixture(scope="session")
def tasks(snapshot_dir) -> list[dict]:
    from rl_assets.oracle import load_tasks

    return load_tasks(snapshot_dir)
