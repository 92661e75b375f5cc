"""Resources shared by every asset: the DuckDB warehouse and where raw data and snapshots live."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg
import duckdb

from orchestration import paths

# Every asset that writes the warehouse runs in this pool; DuckDB allows one writer process.
# Give the pool a limit of 1 in dagster.yaml (see docs/architecture.md) when running several runs at once.
WAREHOUSE_POOL = "duckdb_warehouse"


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file (raw.*, staging.*, intermediate.*, marts.*)."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()


class DataPaths(dg.ConfigurableResource):
    """Folders the pipeline reads raw files from and writes environment snapshots to."""

    raw_root: str
    snapshots_root: str


def default_resources() -> dict[str, object]:
    return {
        "warehouse": Warehouse(path=str(paths.warehouse_path())),
        "data_paths": DataPaths(raw_root=str(paths.raw_root()), snapshots_root=str(paths.snapshots_root())),
    }
