"""Raw assets: one per source, each loading every file of its folder into DuckDB schema `raw`.

The data version of each asset is the content hash of its input files, so downstream assets
record exactly which raw data they were built from. Malformed records go to raw.rejected_records.
"""


from pathlib import Path

import dagster as dg

from orchestration import raw_sources
from orchestration.defs.resources import WAREHOUSE_POOL, DataPaths, Warehouse

SOURCE_DESCRIPTIONS = {
    "sec10k": "SEC 10-K tables (fiscal 2024), one JSON file per table under sec10k_tables/<company>/.",
    "finqa": "FinQA expert-written questions over earnings-report tables (finqa/*.jsonl).",
    "tatqa": "TAT-QA hybrid table+text questions over annual reports (tatqa/*.json).",
}


def _raw_asset(source: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["raw", source]),
        group_name="raw",
        description=SOURCE_DESCRIPTIONS[source],
        kinds={"duckdb", "python"},
        code_version="raw-v1",
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                "no_rejected_records",
                asset=dg.AssetKey(["raw", source]),
                description="Every record of the source loaded; rejected ones (WARN) are listed with file, key and reason.",
            )
        ],
    )
    def _load(context: dg.AssetExecutionContext, warehouse: Warehouse, data_paths: DataPaths) -> dg.MaterializeResult:
        raw_root = Path(data_paths.raw_root)
        with warehouse.connect() as con:
            result = raw_sources.load_source(con, source, raw_root, progress=context.log.info)
            rejected = con.execute(
                "SELECT source_file, record_key, reason, detail FROM raw.rejected_records "
                "WHERE source = ? ORDER BY source_file, record_key LIMIT 200",
                [source],
            ).fetchall()
        if result.rejected:
            context.log.warning(
                f"{source}: {result.rejected} malformed record(s) written to raw.rejected_records: {result.rejected_by_reason}"
            )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(result.content_hash),
            metadata={
                "content_hash": result.content_hash,
                "files": len(result.files),
                "rejected_records": result.rejected,
                "rejected_by_reason": result.rejected_by_reason,
                **{f"rows/{table}": n for table, n in result.counts.items()},
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="no_rejected_records",
                    passed=result.rejected == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "rejected_records": result.rejected,
                        "rejected_by_reason": result.rejected_by_reason,
                        "first_rejected": dg.MetadataValue.json(
                            [{"file": f, "key": k, "reason": r, "detail": d} for f, k, r, d in rejected]
                        ),
                    },
                )
            ],
        )

    return _load


raw_assets = [_raw_asset(source) for source in raw_sources.SOURCES]
