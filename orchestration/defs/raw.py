"""Raw assets: one per source, each loading every file of its folder into DuckDB schema `raw`
(the loaders are plain Python in rl_assets.raw; this module only wires them into Dagster).

- `raw_files/<source>` (observable source asset): the source's files; its data version is their
  content hash, so a run can tell which sources changed before loading anything.
- `raw/<source>`: the load. Code version: hash of the loader code; data version: hash of (input
  content hash, loader code version). Checks: `source_loaded` (blocking: fails the run when the source
  loses most of its records or loads none) and `no_rejected_records` (WARN: lists rejected records,
  ignored files and raw folders no source reads).
"""


import hashlib
import warnings
from pathlib import Path

import dagster as dg

from orchestration.defs.resources import WAREHOUSE_POOL, DataPaths, Warehouse, step_purpose
from rl_assets import raw
from rl_assets.versioning import code_version

LOADER_CODE_VERSION = code_version("rl_assets.raw", "rl_assets.programs", "rl_assets.numbers")

SOURCE_DESCRIPTIONS = {
    "sec10k": "SEC 10-K tables (fiscal 2024), one JSON file per table under sec10k_tables/<company>/.",
    "finqa": "FinQA expert-written questions over earnings-report tables (finqa/*.jsonl, finqa/*.json).",
    "tatqa": "TAT-QA hybrid table+text questions over annual reports (tatqa/*.json, tatqa/*.jsonl).",
}
FIRST_REJECTED = 200  # rejected records listed in the check metadata


def raw_files_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw_files", source])


def data_version(content_hash: str) -> str:
    """The raw asset's data version: what it loaded (input content hash) and how (loader code version)."""
    return hashlib.sha256(f"{content_hash}:{LOADER_CODE_VERSION}".encode()).hexdigest()


def _raw_files(source: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=raw_files_key(source),
        group_name="raw",
        description=f"The files of raw source {source} under the raw root ({raw.SOURCE_DIRS[source]}/).",
        required_resource_keys={"data_paths"},
    )
    def _observe(context) -> dg.ObserveResult:
        raw_root = Path(context.resources.data_paths.raw_root)
        return dg.ObserveResult(
            data_version=dg.DataVersion(raw.content_hash(source, raw_root)),
            metadata={"files": len(raw.input_files(source, raw_root))},
        )

    return _observe


def _raw_asset(source: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(["raw", source])

    @dg.asset(
        key=key,
        deps=[raw_files_key(source)],
        group_name="raw",
        description=SOURCE_DESCRIPTIONS[source],
        kinds={"duckdb", "python"},
        code_version=LOADER_CODE_VERSION,
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                "source_loaded", asset=key, blocking=True,
                description=f"The source loads: it has no input files, or it loads at least one record and "
                            f"rejects at most {raw.MAX_REJECTED_SHARE:.0%} of them (blocks everything downstream).",
            ),
            dg.AssetCheckSpec(
                "no_rejected_records", asset=key,
                description="Every record of the source loaded and every file read; rejected records (WARN) are "
                            "listed with file, key and reason.",
            ),
        ],
    )
    def _load(context: dg.AssetExecutionContext, warehouse: Warehouse, data_paths: DataPaths) -> dg.MaterializeResult:
        raw_root = Path(data_paths.raw_root)
        # the warehouse lock (exclusive) serialises the raw loads of parallel steps and runs: DuckDB has one writer
        with warehouse.connect(purpose=step_purpose(context), log=context.log.info) as con:
            result = raw.load_source(con, source, raw_root, progress=context.log.info)
            rejected = con.execute(
                "SELECT source_file, record_key, reason, detail FROM raw.rejected_records "
                f"WHERE source = ? ORDER BY source_file, record_key LIMIT {FIRST_REJECTED}",
                [source],
            ).fetchall()
        unclaimed = raw.unclaimed_folders(raw_root)
        failure = result.failure()
        if failure:
            context.log.error(failure)
        elif result.rejected:
            context.log.warning(
                f"{source}: {result.rejected} malformed record(s) written to raw.rejected_records: {result.rejected_by_reason}"
            )
        for name in unclaimed:
            context.log.warning(f"{raw_root / name} is read by no source (sources: {sorted(raw.SOURCE_DIRS.values())})")
        counts = {
            "records": result.records,
            "records_loaded": result.records_loaded,
            "rejected_records": result.rejected,
            "rejected_by_reason": result.rejected_by_reason,
        }
        where = {
            "ignored_files": dg.MetadataValue.json(result.ignored_files),
            "unclaimed_raw_folders": dg.MetadataValue.json(unclaimed),
        }
        return dg.MaterializeResult(
            data_version=dg.DataVersion(data_version(result.content_hash)),
            metadata={
                "content_hash": result.content_hash,
                "loader_code_version": LOADER_CODE_VERSION,
                "files": len(result.files),
                "raw_root": str(raw_root),
                "warehouse": str(warehouse.path),
                **counts,
                **where,
                **{f"rows/{table}": n for table, n in result.counts.items()},
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="source_loaded",
                    passed=failure is None,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=failure,
                    metadata={**counts, "rejected_share": round(result.rejected_share, 4),
                              "max_rejected_share": raw.MAX_REJECTED_SHARE, "failure": failure or ""},
                ),
                dg.AssetCheckResult(
                    check_name="no_rejected_records",
                    passed=result.rejected == 0 and not result.ignored_files,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        **counts,
                        **where,
                        "first_rejected": dg.MetadataValue.json(
                            [{"file": f, "key": k, "reason": r, "detail": d} for f, k, r, d in rejected]
                        ),
                    },
                ),
            ],
        )

    return _load


with warnings.catch_warnings():  # observable source assets are marked beta in this Dagster version
    warnings.simplefilter("ignore", dg.BetaWarning)
    raw_file_sources = [_raw_files(source) for source in raw.SOURCES]
raw_assets = [_raw_asset(source) for source in raw.SOURCES]
