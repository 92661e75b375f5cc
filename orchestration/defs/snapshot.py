"""The environment snapshot asset and its blocking oracle check.

The snapshot exports marts/world_tables, marts/world_cells and marts/tasks into an immutable,
content-addressed directory (rl_assets.snapshot); its data version is that content hash. The oracle
check solves every task through the environment's real tools (rl_assets.oracle) and blocks anything
downstream (training, evaluation) unless every task set passes at >= ORACLE_MIN_PASS_RATE.
"""

import dagster as dg

from orchestration.defs.resources import DataPaths, Warehouse
from rl_assets.oracle import evaluate_oracle
from rl_assets.snapshot import export_snapshot

ORACLE_MIN_PASS_RATE = 0.98
MART_KEYS = [dg.AssetKey(["marts", name]) for name in ("world_tables", "world_cells", "tasks")]
RAW_KEYS = [dg.AssetKey(["raw", name]) for name in ("sec10k", "finqa", "tatqa")]


@dg.asset(
    key="environment_snapshot",
    group_name="environment",
    deps=MART_KEYS,
    kinds={"parquet", "duckdb"},
    code_version="snapshot-v1",
    check_specs=[
        dg.AssetCheckSpec(
            "oracle_pass_rate",
            asset="environment_snapshot",
            blocking=True,
            description=f"The oracle solves >= {ORACLE_MIN_PASS_RATE:.0%} of every task set through the real tools.",
        )
    ],
)
def environment_snapshot(
    context: dg.AssetExecutionContext, warehouse: Warehouse, data_paths: DataPaths
) -> dg.MaterializeResult:
    source_versions = {}
    for key in RAW_KEYS:
        event = context.instance.get_latest_materialization_event(key)
        if event is not None and event.asset_materialization is not None:
            source_versions[key.to_user_string()] = event.asset_materialization.tags.get("dagster/data_version", "")
    snapshot = export_snapshot(warehouse.path, data_paths.snapshots_root, source_versions)
    context.log.info(f"snapshot {snapshot.hash} at {snapshot.path} ({'new' if snapshot.created else 'unchanged'})")

    report = evaluate_oracle(snapshot.path, progress=context.log.info)
    passed = report.passed(ORACLE_MIN_PASS_RATE)
    check_metadata = {
        **{f"{name}/pass_rate": s["pass_rate"] for name, s in report.task_sets.items()},
        **{f"{name}/tasks": s["tasks"] for name, s in report.task_sets.items()},
        "by_source": dg.MetadataValue.json(report.by_source),
        "failures": dg.MetadataValue.json(report.failures[:200]),
        "failure_count": len(report.failures),
        "min_pass_rate": ORACLE_MIN_PASS_RATE,
    }
    manifest = snapshot.manifest
    return dg.MaterializeResult(
        data_version=dg.DataVersion(snapshot.hash),
        metadata={
            "path": dg.MetadataValue.path(str(snapshot.path)),
            "snapshot_hash": snapshot.hash,
            "created": snapshot.created,
            "created_at": manifest["created_at"],
            **{f"rows/{name}": t["rows"] for name, t in manifest["tables"].items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="oracle_pass_rate",
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=check_metadata,
            )
        ],
    )


snapshot_assets = [environment_snapshot]
