"""A user adds reports by dropping files in the same format into the raw folder and re-materialising."""

from __future__ import annotations

import json
import os
import shutil

import dagster as dg
import duckdb

from orchestration.defs.dbt import finqa_dbt_models
from orchestration.defs.raw import raw_assets
from orchestration.defs.resources import DataPaths, Warehouse
from orchestration.definitions import dbt_resource
from orchestration.paths import REPO_ROOT

RAW = REPO_ROOT / "data" / "raw"


def _materialise(raw_root, warehouse, tmp_path):
    saved = os.environ.get("FINQA_RL_WAREHOUSE")
    try:
        return dg.materialize(
            [*raw_assets, finqa_dbt_models],
            resources={
                "dbt": dbt_resource(),
                "warehouse": Warehouse(path=str(warehouse)),
                "data_paths": DataPaths(raw_root=str(raw_root), snapshots_root=str(tmp_path / "snapshots")),
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
    finally:
        if saved is None:
            os.environ.pop("FINQA_RL_WAREHOUSE", None)
        else:
            os.environ["FINQA_RL_WAREHOUSE"] = saved


def test_a_dropped_in_company_becomes_part_of_the_world_and_the_tasks(tmp_path):
    raw_root = tmp_path / "raw"
    # a small copy of the real sources ...
    for company in ("apple", "nvidia"):
        shutil.copytree(RAW / "sec10k_tables" / company, raw_root / "sec10k_tables" / company)
    (raw_root / "finqa").mkdir(parents=True)
    lines = (RAW / "finqa" / "finqa_examples.jsonl").read_text().splitlines()[:40]
    (raw_root / "finqa" / "finqa_examples.jsonl").write_text("\n".join(lines) + "\n")
    (raw_root / "tatqa").mkdir()
    docs = json.loads((RAW / "tatqa" / "tatqa_dataset_dev.json").read_text())[:15]
    (raw_root / "tatqa" / "tatqa_dataset_dev.json").write_text(json.dumps(docs))
    # ... plus a company the project has never seen, in the same format (no seed row, no code change)
    new_company = raw_root / "sec10k_tables" / "my_corp"
    new_company.mkdir()
    for table in sorted((RAW / "sec10k_tables" / "apple").glob("*.json"))[:6]:
        shutil.copy(table, new_company / table.name)

    warehouse = tmp_path / "warehouse.duckdb"
    result = _materialise(raw_root, warehouse, tmp_path)
    assert result.success

    with duckdb.connect(str(warehouse), read_only=True) as con:
        worlds = {r[0] for r in con.execute("select distinct world_id from marts.world_tables where source = 'sec10k'").fetchall()}
        assert worlds == {"apple", "nvidia", "my_corp"}
        my_tasks = con.execute("select question from marts.tasks where world_id = 'my_corp'").fetchall()
        assert my_tasks and all("My Corp" in q for (q,) in my_tasks)
        split = con.execute("select distinct split from marts.tasks where world_id = 'my_corp'").fetchall()
        assert len(split) == 1
