"""Shared pieces of the SkyPilot launcher tests: a small snapshot directory, and a `policy` asset that
launches through the launcher the way the training asset does.

(No `from __future__ import annotations`: Dagster reads the asset's context annotation at definition.)"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from orchestration.launchers import TrainingLaunch
from orchestration.launchers.skypilot import SkyPilotLauncher


def make_snapshot(root: Path, content: str = "tasks") -> tuple[Path, str]:
    """A directory shaped like an environment snapshot (content hash in manifest.json)."""
    snapshot_hash = hashlib.sha256(content.encode()).hexdigest()[:16]
    path = root / snapshot_hash
    path.mkdir(parents=True)
    (path / "tasks.parquet").write_text(content)
    (path / "world.duckdb").write_bytes(b"\0" * 1024)
    (path / "manifest.json").write_text(json.dumps({"snapshot_hash": snapshot_hash, "tables": {}}))
    return path, snapshot_hash


def training_launch(
    tmp_path: Path, snapshot: Path, snapshot_hash: str, run_id: str = "run-1", **overrides
) -> TrainingLaunch:
    return TrainingLaunch(
        run_id=run_id,
        config_name="tiny-test",
        snapshot_path=str(snapshot),
        snapshot_hash=snapshot_hash,
        output_dir=str(tmp_path / "runs" / run_id),
        config_overrides=overrides,
    )


def policy_asset(launch: TrainingLaunch) -> dg.AssetsDefinition:
    @dg.asset(name="policy")
    def policy(context: dg.AssetExecutionContext, skypilot_launcher: SkyPilotLauncher):
        yield from skypilot_launcher.launch(context, launch)

    return policy


def materialize(launcher: SkyPilotLauncher, launch: TrainingLaunch, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [policy_asset(launch)],
        resources={"skypilot_launcher": launcher},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (event,) = result.asset_materializations_for_node("policy")
    return event


def log_messages(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    """Every log line of the run, as the Dagster UI shows them."""
    return [entry.user_message for entry in instance.all_logs(result.run_id) if entry.user_message]
