"""Automation that works out of the box under `dagster dev`: everything below is RUNNING by default.

- `raw_files_sensor` (every 30 s): compares the content hash of each raw source folder
  (`rl_assets.raw.content_hash`, the data version of the observable source `raw_files/<source>`) with the
  source's latest observation, and observes every source whose files were added, changed or removed; the
  raw asset of that source then runs by declarative automation (its input's data version changed).
- declarative automation (`finqa_automation`, our own `AutomationConditionSensorDefinition`, every 30 s):
  raw assets, dbt models and the environment snapshot run when missing or when an input updated (and
  never past a failed blocking check upstream), so a raw update flows raw -> dbt -> snapshot ->
  evaluation (the evaluation assets carry their own conditions: see orchestration/defs/evaluation.py,
  and their own sensor, `finqa_evaluation_automation`, whose runs carry the tag
  `finqa_rl/loads_model=true` that the instance's run queue limits: .dagster_home/dagster.yaml).
  Training (group `training`) gets no condition and is not targeted: it never runs by itself.
- `nightly_evaluation` (orchestration/defs/evaluation.py): every policy on every task set at 02:00 UTC.

`with_automation(assets)` attaches the conditions; `build_definitions` applies it to every asset.
"""

from pathlib import Path

import dagster as dg

from orchestration.defs.raw import raw_files_key
from orchestration.defs.resources import DataPaths
from orchestration.defs.training import MODEL_LOADING_TAG  # {"finqa_rl/loads_model": "true"}
from rl_assets import raw

AUTOMATED_GROUPS = ("raw", "curation_seeds", "curation_staging", "curation_intermediate", "curation_marts",
                    "curation", "environment")
NOT_AUTOMATED_GROUPS = ("training",)
# Runs of these groups load models (policies, rollouts): they are automated by their own sensor, whose runs
# carry MODEL_LOADING_TAG (the evaluation and training jobs tag their runs the same way).
MODEL_LOADING_GROUPS = ("evaluation",)
RAW_CHECK_INTERVAL_S = 30
AUTOMATION_INTERVAL_S = 30


def when(trigger: dg.AutomationCondition, label: str, ignore_missing: dg.AssetSelection | None = None
         ) -> dg.AutomationCondition:
    """Request an asset (partition) once it is missing or `trigger` fired since it was last requested or
    updated, when no input is missing or running and no upstream blocking check failed.

    Unlike `eager()`, an asset that is already missing when automation first sees it is requested too
    (`eager()` counts its first evaluation as "handled", so a never-materialised asset waits for an
    upstream change); a failed run is not retried until an input changes again."""
    A = dg.AutomationCondition
    missing_inputs = A.any_deps_missing() if ignore_missing is None else A.any_deps_missing().ignore(ignore_missing)
    checks_passed = (A.all_deps_blocking_checks_passed() if ignore_missing is None
                     else A.all_deps_blocking_checks_passed().ignore(ignore_missing))
    return (
        (A.newly_missing() | trigger).since((A.newly_requested() | A.newly_updated()).with_label("requested_or_updated"))
        & ~missing_inputs
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
        & checks_passed
    ).with_label(label)


def on_upstream_update() -> dg.AutomationCondition:
    return when(dg.AutomationCondition.any_deps_updated(), "on_missing_or_upstream_update")


def with_automation(assets: list) -> list:
    """The assets with automation conditions on the groups of AUTOMATED_GROUPS (others unchanged)."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name in AUTOMATED_GROUPS and spec.automation_condition is None:
            return spec.replace_attributes(automation_condition=on_upstream_update())
        return spec

    return [a.map_asset_specs(attach) if isinstance(a, dg.AssetsDefinition) else a for a in assets]


def changed_sources(instance: dg.DagsterInstance, raw_root: Path) -> dict[str, tuple[str, int]]:
    """source -> (content hash of its files now, storage id of its latest observation) for every source
    whose files differ from its latest `raw_files/<source>` observation (or that was never observed)."""
    changed = {}
    for source in raw.SOURCES:
        records = instance.fetch_observations(raw_files_key(source), limit=1).records
        observed = records[0].asset_observation.tags.get("dagster/data_version") if records else None
        current = raw.content_hash(source, raw_root)
        if current != observed:
            changed[source] = (current, records[0].storage_id if records else 0)
    return changed


@dg.sensor(
    name="raw_files_sensor",
    minimum_interval_seconds=RAW_CHECK_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[raw_files_key(s) for s in raw.SOURCES],
    description="Observes raw_files/<source> whenever the files of a source under the raw folder were added, "
                "changed or removed (checked every 30 s); automation then reloads that source and what depends on it.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, data_paths: DataPaths):
    changed = changed_sources(context.instance, Path(data_paths.raw_root))
    if not changed:
        return dg.SkipReason(f"no raw source changed under {data_paths.raw_root}")
    return dg.RunRequest(
        # one request per (files, last observation): files changed back to earlier content are a new request
        run_key="raw_files/" + ",".join(f"{s}:{h[:16]}:{seen}" for s, (h, seen) in sorted(changed.items())),
        asset_selection=[raw_files_key(s) for s in sorted(changed)],
        tags={"finqa_rl/trigger": "raw_files_changed", "finqa_rl/sources": ",".join(sorted(changed))},
    )


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Declarative automation of the data: raw -> dbt -> snapshot (evaluation has its own sensor)."""
    return dg.AutomationConditionSensorDefinition(
        "finqa_automation",
        target=dg.AssetSelection.all() - dg.AssetSelection.groups(*NOT_AUTOMATED_GROUPS, *MODEL_LOADING_GROUPS),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_S,
        description="Declarative automation: raw -> dbt -> snapshot (never training; evaluation: "
                    "finqa_evaluation_automation).",
    )


def evaluation_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Declarative automation of the evaluation: its runs carry MODEL_LOADING_TAG, so the instance's
    `tag_concurrency_limits` (.dagster_home/dagster.yaml) bound how many load a model at once and a raw
    change is not queued behind all of them."""
    return dg.AutomationConditionSensorDefinition(
        "finqa_evaluation_automation",
        target=dg.AssetSelection.groups(*MODEL_LOADING_GROUPS),
        run_tags=MODEL_LOADING_TAG,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_S,
        description="Declarative automation of the evaluation (policy x task set partitions) when the snapshot "
                    "or a policy changes; runs tagged finqa_rl/loads_model=true.",
    )


def automation_sensors() -> list[dg.AutomationConditionSensorDefinition]:
    return [automation_sensor(), evaluation_automation_sensor()]
