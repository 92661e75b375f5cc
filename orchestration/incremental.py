"""Run only what changed: which assets of a job are out of date, and why.

The raw files are observed first (`raw_files/*`, data version = content hash). An asset is out of date
when Dagster's data versioning says so (never materialised; its code version changed; a parent has a
newer data version than the one it was built from, e.g. a raw source whose files changed), when one of
its blocking (ERROR) checks failed or never finished, or when an output it recorded (`path` metadata, the
warehouse file) is gone. Everything downstream of an out-of-date asset runs too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContext
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


class _Loading(LoadingContext):
    """Dagster's batch loader scope for one staleness evaluation."""

    def __init__(self, instance: dg.DagsterInstance):
        self._instance = instance
        self._loaders: dict = {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


@dataclass
class RunPlan:
    all_assets: list[dg.AssetKey]  # the job's materialisable assets
    reasons: dict[dg.AssetKey, str] = field(default_factory=dict)  # the out-of-date ones, with why

    @property
    def selection(self) -> list[dg.AssetKey]:
        return sorted(self.reasons, key=lambda k: k.to_user_string())

    @property
    def up_to_date(self) -> bool:
        return not self.reasons


def source_keys(defs: dg.Definitions, job_name: str = "main") -> list[dg.AssetKey]:
    """The observable source assets of the job (the raw files)."""
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def(job_name)
    return sorted((k for k in job.asset_layer.selected_asset_keys if graph.get(k).is_observable),
                  key=lambda k: k.to_user_string())


def observe_sources(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str = "main",
                    run_config: dict | None = None):
    """Observe the raw files (one run of the job's observation steps); returns its result."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, asset_selection=source_keys(defs, job_name), raise_on_error=False, run_config=run_config
    )


def plan(defs: dg.Definitions, instance: dg.DagsterInstance, warehouse: str | Path, job_name: str = "main",
         targets: list[dg.AssetKey] | None = None) -> RunPlan:
    """Which of the job's assets must run now (observe the sources first). With `targets`, only those assets
    and what they depend on are considered (the main command's --data-only: up to the environment snapshot)."""
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def(job_name)
    scope = job.asset_layer.selected_asset_keys
    if targets is not None:
        scope = set(scope) & dg.AssetSelection.assets(*targets).upstream().resolve(graph)
    assets = sorted((k for k in scope if graph.get(k).is_materializable), key=lambda k: k.to_user_string())
    result = RunPlan(all_assets=assets)
    if not Path(warehouse).exists():
        result.reasons = {k: f"the warehouse {warehouse} does not exist" for k in assets}
        return result

    resolver = CachingStaleStatusResolver(instance, graph, _Loading(instance))
    for key in assets:
        status = resolver.get_status(key)
        if status == StaleStatus.MISSING:
            result.reasons[key] = "never materialised"
        elif status == StaleStatus.STALE:
            causes = resolver.get_stale_causes(key)
            result.reasons[key] = "; ".join(sorted({_cause(c) for c in causes})) or "stale"
        else:
            missing = _missing_output(instance, key, warehouse)
            if missing:
                result.reasons[key] = missing

    checks = [c for c in graph.asset_check_keys if c.asset_key in set(assets)]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(checks)
    for check in checks:
        record = latest.get(check)
        if record is None or record.status == AssetCheckExecutionRecordStatus.PLANNED:
            result.reasons.setdefault(check.asset_key, f"check {check.name} has no result")
        elif record.status == AssetCheckExecutionRecordStatus.FAILED and _severity(record) == dg.AssetCheckSeverity.ERROR:
            result.reasons.setdefault(check.asset_key, f"check {check.name} failed in the last run")

    roots = list(result.reasons)
    if roots:
        for key in dg.AssetSelection.assets(*roots).downstream().resolve(graph):
            if key in set(assets) and key not in result.reasons:
                result.reasons[key] = "downstream of a changed asset"
    return result


def partition_is_current(defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetKey,
                         partition_key: str) -> bool:
    """True when the partition was materialised and neither its code version nor an input's data version
    changed since (Dagster's own staleness, as for the unpartitioned assets above)."""
    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), _Loading(instance))
    return resolver.get_status(key, partition_key) == StaleStatus.FRESH


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, run_plan: RunPlan, job_name: str = "main",
            run_config: dict | None = None):
    """Run the out-of-date assets (and their checks) as one run of the job."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, asset_selection=run_plan.selection, raise_on_error=False, run_config=run_config
    )


def _cause(cause) -> str:
    dependency = f" {cause.dependency.asset_key.to_user_string()}" if getattr(cause, "dependency", None) else ""
    return f"{cause.reason}{dependency}".strip()


def _severity(record) -> dg.AssetCheckSeverity | None:
    data = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
    return getattr(data, "severity", None)


def _missing_output(instance: dg.DagsterInstance, key: dg.AssetKey, warehouse: str | Path) -> str | None:
    """An output the last materialisation recorded that is gone, or another warehouse than it wrote."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    written = metadata.get("warehouse")
    if written is not None and Path(str(written.value)) != Path(warehouse):
        return f"last materialised into another warehouse ({written.value})"
    path = metadata.get("path")
    if path is not None and isinstance(path.value, str) and not Path(path.value).exists():
        return f"its output {path.value} is gone"
    return None
