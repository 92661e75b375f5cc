"""The environment snapshot asset and its blocking oracle check.

The snapshot exports marts/world_tables, marts/world_cells and marts/tasks into a content-addressed
staging directory (rl_assets.snapshot); the oracle check solves every task through the environment's
real tools (rl_assets.oracle) and only when every task set passes at >= MIN_PASS_RATE is the directory
published (atomically renamed to <snapshots_root>/<hash>, the check result in its manifest). A failed
check publishes nothing and fails the asset, so nothing downstream (training, evaluation) runs.

Lineage is derived, not written by hand: the code version is the hash of the code that writes and checks
a snapshot (`snapshot_code_version`), and the manifest records the data versions of the marts this
materialisation read (the same `dagster/input_data_version/*` Dagster records) and, following each
mart's own provenance down to assets without inputs, the versions of everything they were built from (raw
file observations, raw loads, dbt models, seeds). A parent read before it was ever observed (raw files
loaded without an observation first: Dagster's input pointer is "NULL") is recorded with the version its
child saw and listed as `unobserved_sources`.
"""

from dataclasses import dataclass
from typing import Iterator

import dagster as dg

from orchestration.defs.resources import DataPaths, Warehouse, step_purpose
from rl_assets.oracle import MIN_PASS_RATE, SnapshotCheckFailed, check_and_publish, snapshot_code_version
from rl_assets.snapshot import stage_snapshot

MART_KEYS = [dg.AssetKey(["marts", name]) for name in ("world_tables", "world_cells", "tasks")]
DATA_VERSION_TAG = "dagster/data_version"
INPUT_VERSION_PREFIX = "dagster/input_data_version/"
INPUT_POINTER_PREFIX = "dagster/input_event_pointer/"


def _event(instance: dg.DagsterInstance, key: dg.AssetKey, storage_id: int | None = None):
    """The materialisation (or, for an observable source, the observation) of `key` with `storage_id`, else
    the latest one: what this step reads."""
    records_filter = dg.AssetRecordsFilter(asset_key=key, storage_ids=[storage_id] if storage_id is not None else None)
    records = instance.fetch_materializations(records_filter, limit=1).records
    if records:
        return records[0].asset_materialization
    records = instance.fetch_observations(records_filter, limit=1).records
    return records[0].asset_observation if records else None


@dataclass(frozen=True)
class Lineage:
    inputs: dict[str, str]  # the snapshot's inputs (the marts) -> data version
    sources: dict[str, str]  # assets without inputs at the end of the provenance (raw files, seeds)
    all: dict[str, str]  # every asset on the way, inputs and sources included
    # parents read before they were ever materialised or observed (e.g. raw files a run loaded without an
    # observation first): Dagster recorded no event for them, only the version the child saw ("INITIAL")
    unobserved: tuple[str, ...] = ()


def storage_id(pointer: str | None) -> int | None:
    """The event a `dagster/input_event_pointer/*` tag points to; None for Dagster's "NULL" (the parent
    had never been materialised or observed when it was read) or a missing tag."""
    return int(pointer) if pointer and pointer.isdigit() else None


def data_lineage(instance: dg.DagsterInstance, input_keys: list[dg.AssetKey]) -> Lineage:
    """The data versions the snapshot was built from, derived from provenance, not "latest" look-ups.

    Each input's materialisation is the one this step reads (as Dagster's own input_data_version tags);
    from there each event's provenance tags (input data versions and the exact upstream events) lead to
    the assets without inputs, so every version belongs to what was actually exported. A parent that had
    no event when it was read (pointer "NULL") ends the walk there: it is recorded with the version its
    child recorded for it and listed in `unobserved`, never replaced by a later event.
    """
    inputs: dict[str, str] = {}
    sources: dict[str, str] = {}
    reached: dict[str, str] = {}
    unobserved: set[str] = set()
    seen: set[tuple[str, int | None]] = set()
    # (asset, event storage id or None, is one of the snapshot's inputs, the version its child recorded)
    todo: list[tuple[dg.AssetKey, int | None, bool, str]] = [(key, None, True, "") for key in input_keys]
    while todo:
        key, event_id, is_input, recorded = todo.pop()
        name = key.to_user_string()
        if (name, event_id) in seen:
            continue
        seen.add((name, event_id))
        event = _event(instance, key, event_id) if is_input or event_id is not None else None
        if event is None:
            if is_input:
                raise dg.Failure(f"{name} has no materialisation: materialise it before the snapshot")
            reached[name] = sources[name] = recorded  # read before any event of it (or its event is gone)
            unobserved.add(name)
            continue
        tags = event.tags or {}
        reached[name] = tags.get(DATA_VERSION_TAG, "")
        if is_input:
            inputs[name] = reached[name]
        parents = [k[len(INPUT_VERSION_PREFIX):] for k in tags if k.startswith(INPUT_VERSION_PREFIX)]
        if not parents:
            sources[name] = reached[name]
        for parent in parents:
            todo.append((dg.AssetKey.from_user_string(parent), storage_id(tags.get(INPUT_POINTER_PREFIX + parent)),
                         False, tags[INPUT_VERSION_PREFIX + parent]))
    return Lineage(dict(sorted(inputs.items())), dict(sorted(sources.items())), dict(sorted(reached.items())),
                   tuple(sorted(unobserved)))


SNAPSHOT_CODE_VERSION = snapshot_code_version()


@dg.asset(
    key="environment_snapshot",
    group_name="environment",
    deps=MART_KEYS,
    kinds={"parquet", "duckdb"},
    code_version=SNAPSHOT_CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            "oracle_pass_rate",
            asset="environment_snapshot",
            blocking=True,
            description=f"The oracle solves >= {MIN_PASS_RATE:.0%} of every task set through the real tools; "
                        "only then is the snapshot published.",
        )
    ],
)
def environment_snapshot(
    context: dg.AssetExecutionContext, warehouse: Warehouse, data_paths: DataPaths
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    # the export reads the warehouse: hold its lock (shared) so no writer of another step or run changes the
    # marts between the lineage look-up and the export (DuckDB: a writer elsewhere conflicts with a reader)
    with warehouse.lock(exclusive=False, purpose=step_purpose(context), log=context.log.info):
        lineage = data_lineage(context.instance, MART_KEYS)
        staged = stage_snapshot(warehouse.path, data_paths.snapshots_root, lineage={
            "upstream_data_versions": lineage.inputs,
            "source_data_versions": lineage.sources,
            "lineage_data_versions": lineage.all,
            "unobserved_sources": list(lineage.unobserved),
            "code_version": SNAPSHOT_CODE_VERSION,
        })
    context.log.info(f"snapshot {staged.hash}: {'already published' if staged.published else f'staged at {staged.path}'}")
    try:
        snapshot, report, record = check_and_publish(staged, MIN_PASS_RATE, progress=context.log.info)
    except SnapshotCheckFailed as failed:
        yield dg.AssetCheckResult(
            check_name="oracle_pass_rate", passed=False, severity=dg.AssetCheckSeverity.ERROR,
            metadata=_check_metadata(failed.record),
        )
        raise dg.Failure(description=str(failed), metadata=_check_metadata(failed.record)) from None

    manifest = snapshot.manifest
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(snapshot.hash),
        metadata={
            "path": dg.MetadataValue.path(str(snapshot.path)),
            "snapshot_hash": snapshot.hash,
            "created": snapshot.created,
            "created_at": manifest["created_at"],
            "published_at": manifest["published_at"],
            "upstream_data_versions": dg.MetadataValue.json(lineage.inputs),
            "source_data_versions": dg.MetadataValue.json(lineage.sources),
            "lineage_data_versions": dg.MetadataValue.json(lineage.all),
            "unobserved_sources": dg.MetadataValue.json(list(lineage.unobserved)),
            **{f"rows/{name}": t["rows"] for name, t in manifest["tables"].items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="oracle_pass_rate", passed=True, severity=dg.AssetCheckSeverity.ERROR,
                metadata=_check_metadata(record),
            )
        ],
    )


def _check_metadata(record: dict) -> dict:
    return {
        **{f"{name}/pass_rate": s["pass_rate"] for name, s in record["task_sets"].items()},
        **{f"{name}/tasks": s["tasks"] for name, s in record["task_sets"].items()},
        "solved": record["solved"],
        "unsolved_count": record["unsolved_count"],
        "by_source": dg.MetadataValue.json(record["by_source"]),
        "failures": dg.MetadataValue.json(record["unsolved"][:200]),
        "failure_count": record["unsolved_count"],
        "min_pass_rate": record["min_pass_rate"],
        "code_version": record["code_version"],
    }


snapshot_assets = [environment_snapshot]
