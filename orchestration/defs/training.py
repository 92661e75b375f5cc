"""The `policy` asset: a trained FinQA tool-use policy (SFT + GRPO) from a checked environment snapshot.

Run config (`PolicyRunConfig`) picks the training config (a name under rl_assets/configs/ or a YAML path),
`key=value` overrides and the launcher (`local`: a subprocess here; `skypilot`: a cloud GPU). The launcher
runs the one entry point (`python -m rl_assets.train`) and streams its progress through Dagster Pipes; the
artifact ends up in `<FINQA_RL_RUNS_DIR>/<run_id>/` (default `data/runs/`). The default run id names the
config, snapshot, config hash and training code version, so materialising the same thing again resumes or
reuses that directory instead of training twice.

The asset reads only a snapshot whose blocking oracle check passed on the latest `environment_snapshot`
materialisation. It has no automation condition: training costs money and is never started by a data
change; evaluation assets downstream may be.
"""


import base64
import json
from pathlib import Path

import dagster as dg

from orchestration.launchers import TrainingLaunch
from orchestration.paths import runs_root
from rl_assets.training.config import config_path, load_config, parse_overrides
from rl_assets.training.lineage import training_code_version

SNAPSHOT_KEY = dg.AssetKey("environment_snapshot")
ORACLE_CHECK = dg.AssetCheckKey(SNAPSHOT_KEY, "oracle_pass_rate")
LAUNCHERS = {"local": "local_launcher", "skypilot": "skypilot_launcher"}  # launcher name -> resource key
TRAINING_CODE_VERSION = training_code_version()


class PolicyRunConfig(dg.Config):
    config: str = "tiny-local"  # rl_assets/configs/<name>.yaml or a path
    overrides: list[str] = []  # key=value, as the entry point's --set (e.g. "grpo.max_steps=5")
    launcher: str = "local"
    run_id: str = ""  # default: <config>-<snapshot hash>-<config hash>-<code version>


def checked_snapshot(instance: dg.DagsterInstance) -> tuple[str, str]:
    """(path, hash) of the latest environment snapshot, if its oracle check passed on that materialisation."""
    records = instance.fetch_materializations(SNAPSHOT_KEY, limit=1).records
    if not records:
        raise dg.Failure("no environment_snapshot materialisation: materialise the environment first")
    record = records[0]
    metadata = record.asset_materialization.metadata
    path, snapshot_hash = metadata["path"].value, metadata["snapshot_hash"].value
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key([ORACLE_CHECK]).get(ORACLE_CHECK)
    evaluation = check.event.dagster_event.event_specific_data if check and check.event and check.event.dagster_event else None
    target = getattr(evaluation, "target_materialization_data", None)
    if not (evaluation is not None and getattr(evaluation, "passed", False) and target is not None
            and target.storage_id == record.storage_id):
        raise dg.Failure(f"snapshot {snapshot_hash} ({path}) has no passing oracle_pass_rate check on its latest "
                         "materialisation; training reads only checked snapshots")
    manifest = Path(path) / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("oracle", {}).get("passed") is False:
        raise dg.Failure(f"snapshot {snapshot_hash}: its manifest records a failed oracle check")
    return path, snapshot_hash


def curve_markdown(png: Path) -> str:
    return f"![training curve](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})"


@dg.asset(
    key="policy",
    group_name="training",
    deps=[SNAPSHOT_KEY],
    kinds={"pytorch"},
    code_version=TRAINING_CODE_VERSION,
    required_resource_keys=set(LAUNCHERS.values()),
    description="A tool-use policy trained with SFT + GRPO (TRL) on the environment snapshot.",
)
def policy(context: dg.AssetExecutionContext, config: PolicyRunConfig) -> dg.MaterializeResult:
    if config.launcher not in LAUNCHERS:
        raise dg.Failure(f"unknown launcher {config.launcher!r}; known: {', '.join(LAUNCHERS)}")
    train_config = load_config(config.config, config.overrides)  # validates before anything is launched
    overrides = parse_overrides(config.overrides, config_path(config.config))  # as the entry point reads --set
    snapshot_path, snapshot_hash = checked_snapshot(context.instance)
    run_id = config.run_id or f"{train_config.name}-{snapshot_hash[:8]}-{train_config.hash[:8]}-{TRAINING_CODE_VERSION[:8]}"
    output_dir = runs_root() / run_id
    launch = TrainingLaunch(run_id=run_id, config_name=config.config, snapshot_path=str(snapshot_path),
                            snapshot_hash=snapshot_hash, output_dir=str(output_dir),
                            config_overrides=overrides)
    launcher = getattr(context.resources, LAUNCHERS[config.launcher])
    reported = [r for r in launcher.launch(context, launch) if isinstance(r, dg.MaterializeResult)]
    if not reported:
        raise dg.Failure(f"training run {run_id} reported no materialisation; see the step's logs")
    metadata = dict(reported[-1].metadata or {})
    lineage = json.loads((output_dir / "lineage.json").read_text())
    curve = output_dir / "training_curve.png"
    if curve.exists():
        metadata["training_curve"] = dg.MetadataValue.md(curve_markdown(curve))
        metadata["training_curve_path"] = dg.MetadataValue.path(str(curve))
    metadata.update({
        "artifact_path": dg.MetadataValue.path(str(output_dir)),
        "path": dg.MetadataValue.path(str(output_dir)),  # the recorded output: gone -> the main command re-trains
        "model_path": dg.MetadataValue.path(str(output_dir / "model")),
        "run_id": run_id,
        "launcher": config.launcher,
        "snapshot_hash": lineage["snapshot_hash"],
        "config_name": lineage["config_name"],
        "config_hash": lineage["config_hash"],
        "git_commit": lineage["git_commit"] or "",
        "training_code_version": lineage["code_version"],
        "lineage": dg.MetadataValue.json({k: v for k, v in lineage.items() if k not in ("task_ids", "config")}),
    })
    return dg.MaterializeResult(metadata=metadata)


training_assets = [policy]
